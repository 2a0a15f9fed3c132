"""The shipped examples are checked against the code, so they cannot drift from it."""

import re
from pathlib import Path


import snaplayers
from snaplayers import privilege
from snaplayers.device import parse
from snaplayers.props import PROPERTIES, settings_from

EXAMPLES = Path(snaplayers.__file__).parent / "examples"


def blocks(text):
    return {m.group(1) + " " + m.group(2): m.group(3)
            for m in re.finditer(r"define ([\w-]+) ([\w-]+) \{(.*?)\n\}", text, re.S)}


def test_script_definition_uses_only_real_properties():
    conf = blocks((EXAMPLES / "amanda.conf").read_text())
    body = conf["script-tool snaplayers"]
    props = dict(re.findall(r'property "([^"]+)" "([^"]*)"', body))
    assert set(props) <= set(PROPERTIES)
    settings = settings_from(props)
    assert settings.mount_base == "/v/amsnap"
    assert 'plugin "script-snaplayers"' in body and "execute-where client" in body
    for cmd in ("pre-dle-amcheck", "post-dle-amcheck", "pre-dle-estimate", "post-dle-estimate",
                "pre-dle-backup", "post-dle-backup"):
        assert cmd in body


def test_dumptypes_reference_what_is_defined():
    conf = blocks((EXAMPLES / "amanda.conf").read_text())
    amgtar = conf["dumptype snaplayers-amgtar"]
    assert 'program "APPLICATION"' in amgtar and 'script "snaplayers"' in amgtar
    app = re.search(r'application "([^"]+)"', amgtar).group(1)
    assert '"CHECK-DEVICE" "NO"' in conf[f"application-tool {app}"]
    assert 'program "GNUTAR"' in conf["dumptype snaplayers-gnutar"]


def test_disklist_devices_parse_and_use_defined_dumptypes():
    conf = blocks((EXAMPLES / "amanda.conf").read_text())
    rows = [line.split() for line in (EXAMPLES / "disklist").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    assert len(rows) >= 3
    for host, disk, device, dumptype in rows:
        assert parse(device, "/v/amsnap").format() == device
        assert f"dumptype {dumptype}" in conf


def test_sudoers_example_is_what_install_writes():
    expected = privilege.sudoers("backup", "/usr/local/libexec/snaplayers/helper")
    assert (EXAMPLES / "sudoers").read_text() == expected
