"""The RPM in Zmanda's layout (rpm/build): its files, dependencies and payload, and its scriptlets
run under sh with every absolute path in them moved into a temporary root."""

import gzip
import pathlib
import re
import shutil
import subprocess

import pytest

import snaplayers

ROOT = pathlib.Path(__file__).parents[2]
PLUGIN = "/usr/libexec/amanda/application/script-snaplayers"
REAL = "/usr/libexec/snaplayers/script-snaplayers"       # root's directory, not Amanda's
RERUN = "rpm -q --qf %{POSTIN} snaplayers | sh"


@pytest.fixture(scope="module")
def rpm(tmp_path_factory):
    assert shutil.which("rpmbuild"), "rpmbuild is missing: make installs it (Debian package rpm)"
    out = tmp_path_factory.mktemp("rpm")
    proc = subprocess.run([ROOT / "rpm" / "build", out], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"{out}/snaplayers-{snaplayers.__version__}-1.noarch.rpm\n"
    return out / proc.stdout.strip()


def query(rpm, *args) -> str:
    # a scratch database: rpm makes ~/.rpmdb otherwise
    return subprocess.run(["rpm", "-qp", "--dbpath", rpm.parent / "db", *args, rpm],
                          capture_output=True, text=True, check=True).stdout


def test_files_with_their_modes_owners_flags_and_link(rpm):
    rows = query(rpm, "--qf", "[%{FILENAMES} %{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME} "
                              "%{FILEFLAGS:fflags} %{FILELINKTOS}\n]").splitlines()
    doc = "/usr/share/doc/snaplayers"
    examples = sorted(p.name for p in (ROOT / "snaplayers" / "examples").iterdir())
    assert [row.split(" ") for row in rows] == sorted([
        ["/etc/sysconfig/snaplayers", "-rw-r--r--", "root:root", "cn", ""],    # %config(noreplace)
        [PLUGIN, "lrwxrwxrwx", "root:root", "", "../../snaplayers/script-snaplayers"],
        ["/usr/libexec/snaplayers", "drwxr-xr-x", "root:root", "", ""],
        [REAL, "-rwxr-xr-x", "root:root", "", ""],
        ["/usr/sbin/snaplayers", "lrwxrwxrwx", "root:root", "", "../libexec/snaplayers/script-snaplayers"],
        [doc, "drwxr-xr-x", "root:root", "", ""],
        [f"{doc}/README.md", "-rw-r--r--", "root:root", "d", ""],
        [f"{doc}/examples", "drwxr-xr-x", "root:root", "", ""],
        *([f"{doc}/examples/{name}", "-rw-r--r--", "root:root", "d", ""] for name in examples),
        ["/usr/share/man/man8/script-snaplayers.8.gz", "-rw-r--r--", "root:root", "d", ""],
        ["/usr/share/man/man8/snaplayers.8.gz", "-rw-r--r--", "root:root", "d", ""],
    ])


def test_dependencies(rpm):
    requires = {r for r in query(rpm, "--requires").splitlines() if not r.startswith("rpmlib(")}
    own = {"/bin/sh", f"config(snaplayers) = {snaplayers.__version__}-1"}  # scriptlets', %config's
    assert requires == {"python3 >= 3.9", "lvm2", "mdadm", "util-linux", "sudo", *own}
    assert query(rpm, "--recommends") == "cryptsetup\n"
    assert query(rpm, "--qf", "%{LICENSE} %{ARCH}") == "GPL-2.0-or-later noarch"


def test_the_payload_plugin_runs_and_the_pages_say_zmandas_paths(rpm, tmp_path):
    cpio = subprocess.run(["rpm2cpio", rpm], capture_output=True, check=True).stdout
    subprocess.run(["cpio", "-idm", "--quiet"], input=cpio, cwd=tmp_path, check=True)
    proc = subprocess.run(["python3", tmp_path / PLUGIN[1:], "--help"], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    page = gzip.decompress((tmp_path / "usr/share/man/man8/snaplayers.8.gz").read_bytes())
    page = page.decode().replace("\\-", "-")
    assert PLUGIN in page and "/usr/lib/amanda/application/script" not in page
    assert f"a link to {REAL}, as is /usr/sbin/snaplayers" in page
    assert "/etc/sysconfig/snaplayers" in page and "/etc/default" not in page
    assert f"again after a change: {RERUN}" in page


class FakeRoot:
    """A temporary root for the scriptlets: every absolute path in them (but /dev/null) moved
    under it; a stub for its /usr/sbin/snaplayers (which notes its arguments), and one for
    `getent` (which knows only amandabackup) first on PATH."""

    def __init__(self, rpm, path: pathlib.Path):
        self.rpm, self.path = rpm, path
        stubs = path / "stubs"
        stubs.mkdir()
        (stubs / "getent").write_text('#!/bin/sh\n[ "$1 $2" = "passwd amandabackup" ]\n')
        (stubs / "getent").chmod(0o755)
        # a snaplayers on PATH is never the one %post runs
        (stubs / "snaplayers").write_text("#!/bin/sh\nexit 1\n")
        (stubs / "snaplayers").chmod(0o755)
        self.file("/usr/sbin/snaplayers", '#!/bin/sh\necho "$*" >>"${0%/*}/calls"\n', 0o755)
        self.calls = self.file("/usr/sbin/calls")
        self.record = self.file("/var/lib/snaplayers/setup")

    def file(self, path: str, text=None, mode: int = 0o644) -> pathlib.Path:
        p = self.path / path.lstrip("/")
        if text is not None:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
            p.chmod(mode)
        return p

    def run(self, tag: str, arg: str) -> subprocess.CompletedProcess:
        text = re.sub(r"(?<![\w./$}#%])/(?!dev/null\b)(?=\w)", f"{self.path}/",
                      query(self.rpm, "--qf", f"%{{{tag}}}"))
        script = self.path / f"{tag}.sh"
        script.write_text(text)
        return subprocess.run(["sh", script, arg], capture_output=True, text=True,
                              env={"PATH": f"{self.path}/stubs:/usr/bin:/bin"})


@pytest.fixture
def fake(rpm, tmp_path):
    return FakeRoot(rpm, tmp_path)


def test_post_installs_for_the_configured_user_and_records_it_once(fake):
    base = f"{fake.path}/v/amsnap"
    fake.file("/usr/libexec/amanda/amandad", "", 0o755)
    fake.file("/etc/sysconfig/snaplayers",
              f"AMANDA_USER=amandabackup\nMOUNT_BASE={base}\nSNAP_SUFFIX=.s\nKEY_DIR=/k\n")
    for arg in "1", "2":                                       # install, then upgrade
        proc = fake.run("POSTIN", arg)
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    install = (f"install --no-plugin --user amandabackup --mount-base {base} --helper "
               f"{fake.path}/usr/libexec/snaplayers/helper --snap-suffix .s --key-dir /k\n")
    assert fake.calls.read_text() == install * 2
    assert fake.record.read_text() == f"mount-base {base}\nmade {base}\nmade {fake.path}/v\n"


@pytest.mark.parametrize("amandad, user, missing", [
    (False, "amandabackup", "no Amanda client (amandad) here yet; once there is"),
    (True, "backup",
     "no MOUNT_BASE, or no user 'backup' (yet), in {root}/etc/sysconfig/snaplayers; then"),
])
def test_post_sets_nothing_up_without_amandad_or_the_user_and_says_what_to_do(fake, amandad, user,
                                                                              missing):
    if amandad:
        fake.file("/usr/lib/amanda/amandad", "", 0o755)
    fake.file("/etc/sysconfig/snaplayers", f"AMANDA_USER={user}\nMOUNT_BASE=/v/amsnap\n")
    proc = fake.run("POSTIN", "1")
    assert proc.returncode == 0
    assert proc.stdout == f"snaplayers: nothing set up: {missing.format(root=fake.path)}: {RERUN}\n"
    assert not fake.calls.exists() and not fake.record.exists()


def test_erase_takes_the_setup_away_unless_mounted_and_upgrade_leaves_it(fake):
    base = f"{fake.path}/v/amsnap"
    fake.file("/var/lib/snaplayers/setup", f"mount-base {base}\nmade {base}\nmade {fake.path}/v\n")
    setup = [fake.file(p, "x") for p in ("/etc/sudoers.d/snaplayers", "/usr/libexec/snaplayers/helper",
                                         "/var/lib/amanda/snaplayers/j", "/var/log/amanda/snaplayers/l")]
    mountinfo = fake.file("/proc/self/mountinfo", f"36 25 0:32 / {base}/vm ro - ext4 /dev/dm-3 rw\n")
    for tag in "PREUN", "POSTUN":                              # the old package's, on upgrade
        assert fake.run(tag, "1").returncode == 0
    proc = fake.run("PREUN", "0")
    assert proc.returncode == 1 and f"{base}/vm is mounted" in proc.stderr
    assert all(p.exists() for p in setup) and fake.record.exists()
    mountinfo.write_text("")
    pathlib.Path(base).mkdir(parents=True)
    assert fake.run("PREUN", "0").returncode == 0
    assert fake.run("POSTUN", "0").returncode == 0
    assert [p for p in [*setup, fake.record, fake.file("/v")] if p.exists()] == []
    assert not fake.file("/usr/libexec/snaplayers").exists()
