"""snaplayers(8) and script-snaplayers(8) in roff, made at build time from the code's own text:
the plugin's --help (amanda.manual()) and the operator commands' parser, so that neither page can
say other than the program. Usage: python3 debian/manpages.py OUTDIR [deb|rpm] (with the source
tree on sys.path; SOURCE_DATE_EPOCH, which dpkg-buildpackage sets, dates the pages)."""

import argparse
import os
import sys
import time

import snaplayers
from snaplayers import amanda, cli, privilege, props, run

# where each package puts the plugin and its settings, and how an admin sets up again after a change
LAYOUTS = {
    "deb": {"plugin": "/usr/lib/amanda/application/script-snaplayers",
            "plugin_is": "the plugin, one file (a Python zipapp); /usr/sbin/snaplayers is a link to it",
            "settings": "/etc/default/snaplayers", "setup": "its postinst",
            "again": "dpkg-reconfigure snaplayers again after a change"},
    # Zmanda's application directory is amandabackup's: the file itself is in root's
    "rpm": {"plugin": "/usr/libexec/amanda/application/script-snaplayers",
            "plugin_is": "the plugin (a Python zipapp): a link to "
                         "/usr/libexec/snaplayers/script-snaplayers, as is /usr/sbin/snaplayers",
            "settings": "/etc/sysconfig/snaplayers", "setup": "its %post",
            "again": "again after a change: rpm -q --qf %{POSTIN} snaplayers | sh"},
}


def plugin_files(layout: dict) -> list:
    """What the plugin reads and writes."""
    return [
        (layout["plugin"], layout["plugin_is"]),
        (props.DEFAULT_STATE_DIR, "each DLE's journal and lock (the state-dir property)"),
        (props.DEFAULT_LOG_DIR, "one debug file per call (the log-dir property)"),
        (props.DEFAULT_KEY_DIR, "luks=<key> opens with <key>.key here (the key-dir property)"),
        ("/usr/share/doc/snaplayers/examples", "amanda.conf (the script-tool and dumptypes in both "
                                               "styles) and a disklist of device fields"),
    ]


def privilege_files(layout: dict) -> list:
    """What the package sets up for the Amanda user."""
    return [
        (layout["settings"],
         f"the package's settings: AMANDA_USER, MOUNT_BASE, SNAP_SUFFIX and KEY_DIR; {layout['setup']} "
         f"runs snaplayers install --no-plugin with them, and {layout['again']}"),
        (run.HELPERS[0], "the helper, root's, with the policy compiled from the layers in it: the "
                         "one program the Amanda user may run through sudo"),
        (privilege.SUDOERS, "the one sudoers rule for the helper, checked with visudo"),
    ]


SEE_ALSO = "amanda.conf(5), amanda-scripts(7), sudoers(5), lvm(8), mdadm(8)"


def roff(text: str) -> str:
    """One line of running text: '-' as \\- (a path or option stays one to copy), and a leading
    '.' or ' made plain text."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text.startswith((".", "'")) else text


def header(name: str, whatis: str, date: str) -> list[str]:
    return [f'.TH {roff(name.upper())} 8 {date} "snaplayers {snaplayers.__version__}" '
            '"System Administration"',
            ".nh", ".ad l",     # paths and options neither hyphenated nor stretched
            ".SH NAME", f"{roff(name)} \\- {roff(whatis)}"]


def item(head: str, text: str) -> list[str]:
    return [".TP", f"\\fB{roff(head)}\\fR", roff(text)]


def doc_of(module) -> str:
    """'snaplayers: what it is.' -> 'what it is'"""
    return module.__doc__.split("\n\n")[0].split(": ", 1)[1].replace("\n", " ").rstrip(".")


def plugin_page(date: str, layout: dict) -> str:
    description, sections = amanda.manual()
    out = header("script-snaplayers", doc_of(snaplayers), date)
    out += [".SH SYNOPSIS", f"\\fBscript\\-snaplayers\\fR {roff(amanda.SYNOPSIS)}",
            ".br", "\\fBscript\\-snaplayers \\-\\-help\\fR",
            ".SH DESCRIPTION", roff(description)]
    for title, lead, blocks in sections:
        out += [f'.SH "{title.upper()}"']
        if lead:
            out += [".PP", roff(lead[0].upper() + lead[1:] + ".")]
        for block in blocks:
            if isinstance(block, str):
                out += [".PP", roff(block)]
            elif len(block) == 1:
                out += [".PP", ".RS 4", ".nf", roff(block[0]), ".fi", ".RE"]
            else:
                out += item(*block)
    out += [".SH FILES"]
    for path, text in plugin_files(layout):
        out += item(path, text)
    out += [".SH SEE ALSO", roff("snaplayers(8), " + SEE_ALSO)]
    return "\n".join(out) + "\n"


def option(action: argparse.Action) -> list[str]:
    head = ", ".join(f"\\fB{roff(o)}\\fR" for o in action.option_strings)
    if action.choices:
        head += " \\fI" + roff("|".join(action.choices)) + "\\fR"
    elif action.nargs != 0:
        head += f" \\fI{roff(action.metavar or action.dest.upper())}\\fR"
    text = (action.help or "") + (" (required)" if action.required else "")
    return [".TP", head, roff(text)]


def operator_page(date: str, layout: dict) -> str:
    parser = cli.build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {a.dest: a.help for a in commands._choices_actions}
    out = header("snaplayers", doc_of(cli), date)
    out += [".SH SYNOPSIS", "\\fBsnaplayers\\fR \\fICOMMAND\\fR [\\fIOPTION\\fR ...]",
            ".br", "\\fBsnaplayers\\fR \\fB\\-\\-help\\fR | \\fB\\-\\-version\\fR",
            ".SH DESCRIPTION",
            roff("The operator's side of the Amanda plugin script-snaplayers(8): it shows what "
                 "the plugin would run and what it left, tears leftovers down, and installs the "
                 "plugin and the Amanda user's one privileged command (the helper, its sudoers "
                 "rule and the root-owned mount base). The package runs its install command "
                 f"from {layout['settings']}."),
            ".PP", roff(parser.epilog), ".SH COMMANDS"]
    for name, sub in commands.choices.items():
        # argparse wraps at the terminal's width: one long line, which groff fills
        sub.formatter_class = lambda prog: argparse.HelpFormatter(prog, width=10000)
        usage = " ".join(sub.format_usage().split()[1:])
        out += [f".SS {name}", roff(helps[name] + "."), ".PP", roff(usage)]
        for action in sub._actions:
            if not isinstance(action, argparse._HelpAction):
                out += option(action)
    out += [".SH FILES"]
    for path, text in plugin_files(layout) + privilege_files(layout):
        out += item(path, text)
    out += [".SH SEE ALSO", roff("script-snaplayers(8), " + SEE_ALSO)]
    return "\n".join(out) + "\n"


def main(outdir: str, package: str = "deb") -> None:
    date = time.strftime("%Y-%m-%d",
                         time.gmtime(int(os.environ.get("SOURCE_DATE_EPOCH", time.time()))))
    for name, page in (("script-snaplayers", plugin_page), ("snaplayers", operator_page)):
        with open(os.path.join(outdir, f"{name}.8"), "w") as f:
            f.write(page(date, LAYOUTS[package]))


if __name__ == "__main__":
    main(*sys.argv[1:3])
