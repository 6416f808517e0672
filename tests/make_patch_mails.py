"""Writes tests/data/patch-mail/: mbox files as a mail thread on the kernel lists would
give them (lore's "mbox" of the thread), made from the lab's own patches:

  gdt-mwait-thread.mbox  the two fixes (the form sent upstream, against 7.2) as
                         "[PATCH 1/2]" and "[PATCH 2/2]" under a cover letter, with a
                         reviewer's reply quoting patch 1; mails not in series order
  gdt-fix-6.1.mbox       the 6.1 backport of the GDT fix under a cover letter, with a reply
  tree/                  the files they touch, from Debian's linux-source-7.2 (7.2.13)

    .venv/bin/python tests/make_patch_mails.py [--tree-72 PATH]

The committed thread keeps the subjects the fixes had when it was made (2026-12-01, before
the series were renumbered per destination); when a fix's diff changes, only that mail's
diff is replaced in it (as for 0002 v2 on 2026-12-08), since tests/test_patch_mail.py
reads the thread as a thread of that day.
"""

from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PATCHES = ROOT / "guests" / "kernel" / "patches"
OUT = ROOT / "tests" / "data" / "patch-mail"
GDT = "0001-x86-kexec-32-reload-gdt-before-restore-processor-state.patch"
MWAIT = "0002-x86-kexec-kick-offline-cpus-out-of-mwait-before-a-kexec-jump.patch"
SEPARATOR = "From mboxrd@z Thu Jan  1 00:00:00 1970\n"
TO = "To: x86@kernel.org\nCc: kexec@lists.infradead.org, linux-kernel@vger.kernel.org\n"


def mid(name: str) -> str:
    return f"<20261201095119.{name}@kjlab.invalid>"


def as_mail(patch: Path, message_id: str, parent: str, extra_trailer: str = "") -> str:
    """A format-patch file as the mail it becomes when sent: its "From <sha>" line gone,
    threading headers added."""
    text = patch.read_text()
    assert text.startswith("From ") and "\nSubject: " in text
    text = text.split("\n", 1)[1]
    headers, body = text.split("\n\n", 1)
    headers += f"\nMessage-Id: {message_id}\nIn-Reply-To: {parent}\nReferences: {parent}\n{TO.rstrip()}"
    if extra_trailer:
        body = body.replace("\nSigned-off-by: ", f"\n{extra_trailer}\nSigned-off-by: ", 1)
    return headers + "\n\n" + body


def cover(subject: str, message_id: str, text: str) -> str:
    return (f"From: kjlab maintainer <maintainer@kjlab.invalid>\nDate: Tue, 1 Dec 2026 09:51:18 +0000\n"
            f"Subject: {subject}\nMessage-Id: {message_id}\n{TO}\n{text}\n"
            " arch/x86/kernel/machine_kexec_32.c | 16 +++++++++++++++-\n"
            " 1 file changed, 15 insertions(+), 1 deletion(-)\n\n-- \n2.39.5\n")


def reply(subject: str, message_id: str, parent: str, quoted: Path) -> str:
    diff = quoted.read_text().split("\ndiff --git ", 1)[1].splitlines()[:12]
    body = "On Tue, Dec 01, 2026, kjlab maintainer wrote:\n> diff --git " + "\n> ".join(diff)
    return (f"From: A Reviewer <reviewer@example.org>\nDate: Wed, 2 Dec 2026 10:00:00 +0000\n"
            f"Subject: Re: {subject}\nMessage-Id: {message_id}\nIn-Reply-To: {parent}\nReferences: {parent}\n"
            f"{TO}\n{body}\n\nLooks right to me; the 64-bit path does the same.\n\n"
            "Reviewed-by: A Reviewer <reviewer@example.org>\n")


def mbox(mails: list[str]) -> str:
    for mail in mails:
        assert "\nFrom " not in mail, "a body line starting with 'From ' would need mboxrd quoting"
    return "".join(SEPARATOR + m.rstrip("\n") + "\n\n" for m in mails)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tree-72", type=Path,
                    default=Path.home() / ".cache/kjlab/source/linux-source-7.2_7.2.13-1/linux")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    c = mid("0")
    thread = [
        cover("[PATCH 0/2] x86/kexec: two fixes for kexec jump", c,
              "Two fixes for kexec jump on x86, found with kjlab: the return on 32-bit, and offline CPUs\n"
              "left in mwait on 32-bit and 64-bit."),
        as_mail(PATCHES / MWAIT, mid("2"), c),
        reply("[PATCH 1/2] x86/kexec/32: Reload the GDT before restore_processor_state()", mid("1.reply"), mid("1"),
              PATCHES / GDT),
        as_mail(PATCHES / GDT, mid("1"), c, "Link: https://bugs.example.org/kexec-jump/1"),
    ]
    (OUT / "gdt-mwait-thread.mbox").write_text(mbox(thread))
    c61 = mid("61.0")
    backport = [
        cover("[PATCH 0/1] x86/kexec/32: the GDT fix for 6.1", c61,
              "The GDT reload before restore_processor_state(), backported to 6.1 (context differs)."),
        as_mail(PATCHES / "6.1" / GDT, mid("61.1"), c61),
        reply("[PATCH] x86/kexec/32: Reload the GDT before restore_processor_state()", mid("61.1.reply"),
              mid("61.1"), PATCHES / "6.1" / GDT),
    ]
    (OUT / "gdt-fix-6.1.mbox").write_text(mbox(backport))
    for rel in sorted({line[6:].strip() for name in (GDT, MWAIT) for line in (PATCHES / name).read_text().splitlines()
                       if line.startswith("+++ b/")}):
        (OUT / "tree" / rel).parent.mkdir(parents=True, exist_ok=True)
        (OUT / "tree" / rel).write_bytes((args.tree_72 / rel).read_bytes())


if __name__ == "__main__":
    main()
