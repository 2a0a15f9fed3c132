"""A real Amanda server and client around a testbed, set up the way an admin would do it.

The server on its own node, amandad on storage0 under inetd with bsdtcp auth, the plugin and
its generated sudoers installed as the README says, and the dumptypes from the plugin's examples.
"""

from __future__ import annotations

import io
import os
import re
import tarfile
import time
from dataclasses import dataclass
from typing import Dict, List

from .. import cache
from ..fixture.topology import MOUNT_BASE, WRONG_KEY
from ..run import CommandFailed, TestbedError, run

CONFIG = "TB"
BROKEN = "TBBROKEN"
# the plugin's shipped example, read as a file: the testbed knows the plugin only as a user does
EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                        "snaplayers", "examples", "amanda.conf")
SERVER = "amanda"
CLIENT = "storage0"
# The example dumptypes, and which variant uses which: both styles are exercised.
DUMPTYPE = {"lv-ext4": "snaplayers-gnutar"}
DEFAULT_DUMPTYPE = "snaplayers-amgtar"
HOLD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "script-testbed-hold")
HOLD_DIR = "/run/testbed-hold"
GROUPS = "/etc/snaplayers/groups"      # the plugin's default groups file
# what says why a run failed, kept on the host before the testbed goes: each node's Amanda debug
# logs and what was still running (a hang shows there, not in a log); the server's run logs too
KEPT = ["/var/log/amanda", "/tmp/testbed-ps.txt", "/tmp/testbed-dmesg.txt"]
STILL_RUNNING = ("ps -eo pid,ppid,stat,etime,wchan:24,args > /tmp/testbed-ps.txt 2>&1; "
                 "dmesg 2>/dev/null | tail -n 300 > /tmp/testbed-dmesg.txt; true")
# The fault tier's configs: one DLE each, held after snaplayers' PRE-DLE-BACKUP (see HOLD)
# so that a fault can happen while the dump runs; TBOVERFLOW's snapshot has 8 MiB of room.
FAULTS = {"TBFAULT": ("md-part-ext4", "snaplayers-amgtar-held"),
          "TBOVERFLOW": ("lv-ext4", "snaplayers-amgtar-small-held")}
NO_ROOM = "64G"        # more than any testbed VG has free
BROKEN_DEFINITIONS = f"""
define script-tool snaplayers-no-room {{
    snaplayers
    property "size" "{NO_ROOM}"
}}
define dumptype snaplayers-amgtar-no-room {{
    program "APPLICATION"
    application "app-amgtar-snaplayers"
    script "snaplayers-no-room"
    auth "bsdtcp"
    compress client fast
    index yes
}}
"""
FAULT_DEFINITIONS = """
define script-tool testbed-hold {
    plugin "script-testbed-hold"
    execute-where client
    execute-on pre-dle-backup
    order 6000
}
define script-tool snaplayers-small {
    snaplayers
    property "size" "8M"
}
define dumptype snaplayers-amgtar-held {
    snaplayers-amgtar
    script "testbed-hold"
}
define dumptype snaplayers-amgtar-small-held {
    program "APPLICATION"
    application "app-amgtar-snaplayers"
    script "snaplayers-small"
    script "testbed-hold"
    auth "bsdtcp"
    compress client fast
    index yes
}
"""


@dataclass
class Layout:
    """How this Amanda was built, asked of Amanda itself: Debian's (`backup`, /usr/lib/amanda)
    or Zmanda's RPMs' (`amandabackup`, /usr/libexec/amanda)."""
    user: str
    group: str
    uid: int
    gid: int
    application_dir: str
    amandahosts: str        # the file amandad reads: ~user/.amandahosts (Debian links it to /etc)

    @classmethod
    def of(cls, tb, node: str) -> "Layout":
        out = tb.exec(node, ["sh", "-c", 'u=$(amgetconf build.CLIENT_LOGIN) && home=$(getent passwd "$u" | cut -d: -f6) '
                                         '&& echo "$u" && id -gn "$u" && id -u "$u" && id -g "$u" '
                                         '&& amgetconf build.APPLICATION_DIR && readlink -f "$home/.amandahosts"'])
        user, group, uid, gid, application_dir, amandahosts = out.split()
        return cls(user, group, int(uid), int(gid), application_dir, amandahosts)


def server_conf(name: str, user: str, extra: str = "") -> str:
    examples = open(EXAMPLES).read()
    return f"""org "snaplayers testbed {name}"
mailto ""
dumpuser "{user}"
inparallel 4
maxdumps 4
dumpcycle 7 days
runspercycle 7
tapecycle 20 tapes
netusage 100000 kbps
etimeout 600
dtimeout 1800
# amcheck waits this long for the client: it sets up each DLE's stack in turn (six in TB), and
# under TCG on a busy host that took more than 60 s (measured: bullseye cell, "timeout waiting for REP")
ctimeout 900
tpchanger "chg-disk:/srv/amanda/{name}/vtapes"
labelstr "^{name}-[0-9][0-9]*$"
autolabel "{name}-%%" empty
tapetype "VTAPE"
infofile "/srv/amanda/{name}/state/curinfo"
logdir "/srv/amanda/{name}/state/log"
indexdir "/srv/amanda/{name}/state/index"
define tapetype VTAPE {{
    length 4096 mbytes
}}
holdingdisk hd1 {{
    directory "/srv/amanda/{name}/holding"
    use 2048 mbytes
}}

# --- from snaplayers' examples/amanda.conf, unchanged ---
{examples}
{extra}"""


@dataclass
class Dump:
    host: str
    disk: str
    level: int
    status: str
    date: str

    @property
    def ok(self) -> bool:
        return bool(self.status.split()) and self.status.split()[-1] == "OK"

    @property
    def datestamp(self) -> str:
        """amadmin find's date as Amanda's dumpspecs and restored file names have it."""
        return re.sub(r"[^0-9]", "", self.date)


class Amanda:
    def __init__(self, testbed, logs: str = ""):
        self.tb = testbed
        self.logs = logs                # where keep_logs puts them (TESTBED_LOGS); "": the cache's logs/
        self.topo = testbed.topo
        self.layout: Layout = None      # asked of the server's Amanda in create()
        self.runs: Dict[str, int] = {}  # amdumps per config: each is a row of the time profile
        self.fetch_retries = 0          # amfetchdump aborts of its own, fetched once more

    @property
    def server(self) -> str:
        return self.topo.container(SERVER)

    @property
    def client_host(self) -> str:
        return self.topo.container(CLIENT)       # the name the server knows the client by

    def put(self, node: str, files: Dict[str, tuple]) -> None:
        """Files in one archive, one call: path -> (text, mode, owner). Each docker exec costs
        about a second under TCG, so set-up batches its writes."""
        ids = {"root": (0, 0), "amanda": (self.layout.uid, self.layout.gid)}
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for path, (text, mode, owner) in files.items():
                data = text.encode()
                info = tarfile.TarInfo(path.lstrip("/"))
                info.size, info.mode = len(data), mode
                info.uid, info.gid = ids[owner]
                tar.addfile(info, io.BytesIO(data))
        self.tb.client.containers.get(self.topo.container(node)).put_archive("/", buf.getvalue())

    # -- set-up ---------------------------------------------------------------------------
    def create(self) -> None:
        import docker.errors
        tb = self.tb
        with tb.steps.step("create amanda server node"):
            try:
                tb.client.containers.get(self.server)
            except docker.errors.NotFound:
                tb.client.containers.run(tb.image, ["sleep", "infinity"], name=self.server,
                                         hostname=SERVER, detach=True, network=self.topo.network,
                                         labels=tb.labels(SERVER))
            self.layout = Layout.of(tb, SERVER)
        with tb.steps.step("configure Amanda server and client (bsdtcp, inetd, sudoers)"):
            self._server()
            self._client()

    def _names(self, node: str) -> List[str]:
        """Every name a peer's reverse lookup may give this node on the testbed network."""
        name = self.topo.container(node)
        # the node's own /etc/hosts maps its address to its bare hostname
        return [name, f"{name}.{self.topo.network}", node, self.tb.ip(node)]

    def configs(self) -> Dict[str, tuple]:
        """Every config on the server: name -> (disklist, definitions added to amanda.conf)."""
        # the broken config holds one good DLE beside the broken ones, not all: amcheck sets
        # each up and down in turn, about 20 s a DLE under TCG, and TB's amcheck has them all
        out = {CONFIG: (self.disklist(), ""),
               BROKEN: (self.disklist(True, only={self.topo.variants[0].name}), BROKEN_DEFINITIONS)}
        names = {v.name for v in self.topo.variants}
        for name, (variant, dumptype) in FAULTS.items():
            if variant in names:
                v = self.topo.variant(variant)
                out[name] = (f"{self.client_host} {variant} {self.topo.device(v)} {dumptype}\n",
                             FAULT_DEFINITIONS)
        return out

    def _server(self) -> None:
        files = {}
        for name, (disklist, extra) in self.configs().items():
            files.update(self._config_files(name, disklist, extra))
        # amrecover runs on the server and talks to the server's own amindexd/amidxtaped
        user = self.layout.user
        hosts = "".join(f"{n} root amindexd amidxtaped\n{n} {user} amdump\n" for n in self._names(SERVER))
        hosts += "localhost root amindexd amidxtaped\n"
        files[self.layout.amandahosts] = (hosts, 0o600, "amanda")
        files["/etc/amanda/amanda-client.conf"] = (
            f'conf "{CONFIG}"\nindex_server "{self.server}"\ntape_server "{self.server}"\n'
            'auth "bsdtcp"\nssh_keys ""\nunreserved-tcp-port 1025,65535\n', 0o644, "root")
        self.put(SERVER, files)
        self._directories(list(self.configs()))
        self.tb.exec(SERVER, ["sh", "-c", "pgrep -x inetd >/dev/null || /usr/sbin/inetd"])

    def _config_files(self, name: str, disklist: str, extra: str) -> Dict[str, tuple]:
        return {f"/etc/amanda/{name}/amanda.conf": (server_conf(name, self.layout.user, extra), 0o644, "amanda"),
                f"/etc/amanda/{name}/disklist": (disklist, 0o644, "amanda")}

    def _directories(self, names: List[str]) -> None:
        script = "".join(f"mkdir -p /srv/amanda/{n}/holding /srv/amanda/{n}/state/log /srv/amanda/{n}/state/index "
                         f"&& for i in $(seq 1 20); do mkdir -p /srv/amanda/{n}/vtapes/slot$i; done && "
                         for n in names)
        configs = " ".join(f"/etc/amanda/{n}" for n in names)
        owner = f"{self.layout.user}:{self.layout.group}"
        self.tb.exec(SERVER, ["sh", "-c", script + f"chown -R {owner} /srv/amanda {configs}"])

    def write_config(self, name: str, disklist: str, extra: str = "") -> None:
        """One more config on the server (the benchmarks' subsets)."""
        self.put(SERVER, self._config_files(name, disklist, extra))
        self._directories([name])

    def _client(self) -> None:
        layout = self.layout
        hosts = "".join(f"{n} {layout.user} amdump\n" for n in self._names(SERVER))
        self.put(CLIENT, {
            layout.amandahosts: (hosts, 0o600, "amanda"),
            "/etc/amanda/amanda-client.conf": (f'conf "{CONFIG}"\nindex_server "{self.server}"\n'
                                               f'tape_server "{self.server}"\nauth "bsdtcp"\n', 0o644, "root"),
            # the fault tier's hold script, next to the plugin in Amanda's application dir
            f"{layout.application_dir}/script-testbed-hold": (open(HOLD).read(), 0o755, "root"),
            # a VM's disks that hold one instant, as the admin lists them for the plugin
            GROUPS: (self.topo.groups_file(CLIENT), 0o644, "root")})
        self.tb.exec(CLIENT, ["sh", "-c", f"mkdir -p {HOLD_DIR} && chown {layout.user}:{layout.group} {HOLD_DIR} && "
                                          "(pgrep -x inetd >/dev/null || /usr/sbin/inetd)"])

    def start_client(self) -> None:
        """What the client's init does: inetd, which starts amandad for each request."""
        self.tb.exec(CLIENT, ["sh", "-c", "pgrep -x inetd >/dev/null || /usr/sbin/inetd"])

    def disklist(self, broken: bool = False, only=None) -> str:
        lines = ["# generated from the testbed topology: device = the encoded mount path"]
        for v in self.topo.variants:
            if only is not None and v.name not in only:
                continue
            dumptype = DUMPTYPE.get(v.name, DEFAULT_DUMPTYPE)
            lines.append(f"{self.client_host} {v.name} {self.topo.device(v)} {dumptype}")
        if broken:
            vg = self.topo.vg(CLIENT)
            lines.append(f"{self.client_host} missing-lv {MOUNT_BASE}/lvm={vg}+nosuch {DEFAULT_DUMPTYPE}")
            # a snapshot size the VG has no room for (BROKEN_DEFINITIONS)
            lines.append(f"{self.client_host} no-room {MOUNT_BASE}/lvm={vg}+{self.topo.variants[0].legs[0].lv} "
                         "snaplayers-amgtar-no-room")
            # errors found only inside the snapshot: a key that does not open it, a guest LV
            # that is not there
            for v in self.topo.variants:
                device = self.topo.device(v)
                if v.luks:
                    lines.append(f"{self.client_host} wrong-key "
                                 f"{device.replace(f'luks={v.luks}', f'luks={WRONG_KEY}')} {DEFAULT_DUMPTYPE}")
                if v.guest_vg:
                    lines.append(f"{self.client_host} missing-guest-lv "
                                 f"{device.rsplit('+', 1)[0]}+nosuch {DEFAULT_DUMPTYPE}")
        return "\n".join(lines) + "\n"

    # -- Amanda's own commands, as the dump user --------------------------------------------
    def as_backup(self, *argv: str, timeout: int = 2400):
        # a hung Amanda command fails the step instead of the whole run; 20 min was too short
        # for a six-DLE amdump with two emulated VMs on two cores (bullseye cell: planner 660 s)
        return self.tb.run(SERVER, ["timeout", str(timeout), *argv], user=self.layout.user)

    def amcheck(self, config: str = CONFIG):
        with self.tb.steps.step(f"amcheck {config}"):
            code, out, err = self.as_backup("amcheck", config)
        return code, out + err

    def amdump(self, config: str = CONFIG, disks=()):
        """amdump of config: every DLE, or these disks of the client alone."""
        start = time.monotonic()
        self.runs[config] = self.runs.get(config, 0) + 1
        only = [self.client_host, *(f"={d}" for d in disks)] if disks else []
        with self.tb.steps.step(f"amdump {config} #{self.runs[config]}" + (f" ({len(disks)} DLEs)" if disks else "")):
            code, out, err = self.as_backup("amdump", config, *only)
        return code, time.monotonic() - start

    def wait_for_estimates(self, marker: str, running, config: str = CONFIG) -> bool:
        """Until this run's amdump log (newer than the file `marker`) says the estimates are
        done (True), or the run ended first (False). Polled in the node, 30 s an exec."""
        log = f"/srv/amanda/{config}/state/log"
        probe = (f"grep -l 'getting estimates took' $(find {log} -maxdepth 1 -name 'amdump*' "
                 f"-type f -newer {marker}) </dev/null >/dev/null 2>&1")
        while running():
            if self.tb.until(SERVER, probe, 30, 2):
                return True
        return self.tb.run(SERVER, ["sh", "-c", probe])[0] == 0     # it may have ended meanwhile

    def report(self, config: str = CONFIG) -> str:
        code, out, err = self.as_backup("amreport", config, "-f", "/dev/stdout")
        return out + err

    def dumps(self, config: str = CONFIG) -> List[Dump]:
        code, out, err = self.as_backup("amadmin", config, "find", "--sort", "hkdl")
        rows = []
        for line in out.splitlines():
            m = re.match(r"(\d{4}-\d\d-\d\d(?: [\d:]+)?)\s+(\S+)\s+(\S+)\s+(\d+)\s+\S+\s+\S+\s+\S+\s+(.*)$", line)
            if m:
                rows.append(Dump(m.group(2), m.group(3), int(m.group(4)), m.group(5).strip(), m.group(1)))
        return rows

    def client_log(self, disk: str) -> str:
        """The plugin's debug logs on the client: what a failure message should show."""
        return self.tb.exec(CLIENT, ["sh", "-c", "tail -n 40 /var/log/amanda/snaplayers/*.debug 2>/dev/null; "
                                                 "tail -n 30 /var/log/amanda/client/TB/*.debug 2>/dev/null | tail -n 60; true"])

    def keep_logs(self, what: str) -> str:
        """Copy KEPT, every config's run logs (amdump, log) and the nodes' process lists and
        kernel messages to the host: into self.logs (TESTBED_LOGS: a matrix cell's results) or
        the cache's logs/; returns the folder."""
        import docker.errors
        base = self.logs or os.path.join(cache.root(), "logs")
        dest = os.path.join(base, f"{self.tb.prefix}-{what}-{time.strftime('%Y%m%d-%H%M%S')}")
        for node in (SERVER, CLIENT):
            self.tb.exec(node, ["sh", "-c", STILL_RUNNING])
            container = self.tb.client.containers.get(self.topo.container(node))
            # path -> folder under dest: each config's run logs in a folder named after it
            wanted = dict.fromkeys(KEPT, node)
            if node == SERVER:
                wanted.update({f"/srv/amanda/{name}/state/log": f"{node}/{name}" for name in self.configs()})
            for path, into in wanted.items():
                try:
                    stream, _ = container.get_archive(path)
                except docker.errors.NotFound:
                    continue            # a node without that folder (no run yet) keeps nothing of it
                os.makedirs(os.path.join(dest, into), exist_ok=True)
                run(["tar", "-x", "--no-same-owner", "--no-same-permissions", "-C", os.path.join(dest, into)],
                    input=b"".join(stream))
        return dest

    def fetch(self, disk: str, dest: str, config: str = CONFIG, date="") -> List[str]:
        """amfetchdump every dump of disk (level 0 first; only those of `date`, as amadmin find
        prints it, or of each date in a list, if given) into dest; extracts them in order."""
        dates = [date] if isinstance(date, str) else date
        with self.tb.steps.step(f"amfetchdump {config} (each DLE)"):
            return self._retried(f"amfetchdump {config} {disk}", 2, lambda: self._fetch(disk, dest, config, dates))

    def _retried(self, what: str, tries: int, call):
        """amfetchdump itself aborts, now and then under TCG, on a race of its own
        (xfer-source-recovery.c: start_part_impl asserts), before it writes a byte: up to
        `tries` calls; the restore is then compared byte for byte as any other."""
        for attempt in range(1, tries + 1):
            try:
                return call()
            except CommandFailed as err:
                if "xfer-source-recovery.c" not in str(err) or attempt == tries:
                    raise
                self.tb.steps.say(f"{what}: aborted on Amanda's own assertion; once more")
                self.fetch_retries += 1

    def _fetch(self, disk: str, dest: str, config: str, dates: List[str]) -> List[str]:
        tb = self.tb
        tb.exec(SERVER, ["sh", "-c", f"rm -rf {dest} && mkdir -p {dest}/files {dest}/tree "
                                     f"&& chown {self.layout.user}:{self.layout.group} {dest}/files"])
        fetches = " && ".join(f"amfetchdump -a {config} {self.client_host} {disk} {re.sub(r'[^0-9]', '', d)}"
                              for d in dates)
        tb.exec(SERVER, ["sh", "-c", f"cd {dest}/files && {fetches}"], user=self.layout.user)
        files = sorted(tb.exec(SERVER, ["ls", f"{dest}/files"]).split(),
                       key=lambda f: (int(f.rsplit(".", 1)[-1]), f))
        for f in files:
            # --listed-incremental=/dev/null: apply each level's additions and deletions in turn
            tb.exec(SERVER, ["tar", "--extract", "--listed-incremental=/dev/null", "--file",
                             f"{dest}/files/{f}", "-C", f"{dest}/tree"])
        return files

    def fetch_each(self, dumps: Dict[str, List["Dump"]], base: str, config: str = CONFIG) -> Dict[str, str]:
        """Every dump listed, per disk, restored by one amfetchdump (each call costs seconds
        under TCG) and extracted in the order listed into base/<disk>/tree; returns those trees."""
        with self.tb.steps.step(f"amfetchdump {config} ({len(dumps)} DLEs at once)"):
            # one call for all dumps: three tries, not two per DLE
            return self._retried(f"amfetchdump {config}", 3, lambda: self._fetch_each(dumps, base, config))

    def _fetch_each(self, dumps: Dict[str, List["Dump"]], base: str, config: str) -> Dict[str, str]:
        files = f"{base}/files"
        # host, exact disk, datestamp, level: one dumpspec per dump (amanda-match(7))
        specs = " ".join(f"{self.client_host} ={d.disk} {d.datestamp} {d.level}"
                         for disk in dumps for d in dumps[disk])
        self.tb.exec(SERVER, ["sh", "-c", f"rm -rf {base} && mkdir -p {files} "
                                          f"&& chown {self.layout.user}:{self.layout.group} {files}"])
        self.tb.exec(SERVER, ["sh", "-c", f"cd {files} && amfetchdump -a {config} {specs}"], user=self.layout.user)
        trees, extract = {}, []
        for disk in dumps:
            trees[disk] = f"{base}/{disk}/tree"
            extract.append(f"mkdir -p {trees[disk]}")
            # amfetchdump names each file host.disk.datestamp.level (--listed-incremental=/dev/null:
            # each one's additions and deletions applied in turn)
            for d in dumps[disk]:
                name = f"{self.client_host}.{disk}.{d.datestamp}.{d.level}"
                extract.append(f"tar --extract --listed-incremental=/dev/null --file {files}/{name} -C {trees[disk]}")
        self.tb.exec(SERVER, ["sh", "-c", "set -e; " + "; ".join(extract)])
        return trees

    def recover(self, disk: str, dest: str) -> str:
        """amrecover, driven through its prompt as an admin would type it."""
        # two questions for one volume: proceed, and load it (each more volume asks once more)
        script = f"sethost {self.client_host}\nsetdisk {disk}\nlcd {dest}\nadd .\nextract\nY\nY\nquit\n"
        self.tb.exec(SERVER, ["sh", "-c", f"rm -rf {dest} && mkdir -p {dest}"])
        with self.tb.steps.step(f"amrecover {CONFIG}"):
            code, out, err = self.tb.run(SERVER, ["sh", "-c", f"printf '%s' '{script}' | amrecover {CONFIG} "
                                                             f"-s {self.server} -t {self.server}"])
        if code != 0:
            raise TestbedError(f"amrecover {disk} exited {code}:\n{(out + err)[-2000:]}")
        return out

    def manifest(self, root: str) -> str:
        return self.tb.python(SERVER, "guest.py", "manifest", {"root": root})["manifest"]


def ok_dumps(dumps: List[Dump]) -> Dict[str, List[int]]:
    out: Dict[str, List[int]] = {}
    for d in dumps:
        if d.ok:
            out.setdefault(d.disk, []).append(d.level)
    return out
