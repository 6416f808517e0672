"""Patches as mails: a `git format-patch` file, a series of them, or an mbox saved from a
mail thread (lore's "mbox.gz" of a thread, a mail client's export) -> the series to apply.

The mails are split by git's own splitter (`git mailsplit`, what `git am` runs), then
chosen as b4 chooses them from a thread: the cover letter ("[PATCH 0/N]") and the replies
("Re: ...") are left out, and so is any other mail without a diff; of several revisions
("[PATCH v2 1/3]") the newest is taken; a numbered series is put in its numbers' order
and must be complete. A file without mail headers (a bare diff) is one patch, named after
the file. What each patch is (subject, author, Message-Id, Link) goes into the kernel's
provenance; what it changes (its diff, hashed by `diff_sha256`) into the kernel's cache key.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import logging
import re
import subprocess
import tempfile
import urllib.parse
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

from ..errors import UserError

log = logging.getLogger(__name__)

MAILSPLIT_TIMEOUT = 120.0
LORE = "https://lore.kernel.org/r/"
# "Re: Fwd: [RFC PATCH v2 1/3] [net-next] subject" -> the reply prefixes, the brackets, the title
_SUBJECT_RE = re.compile(r"^\s*((?:(?:re|aw|fwd?)\s*:\s*)*)((?:\[[^\]]*\]\s*)*)(.*)$", re.IGNORECASE | re.DOTALL)
_COUNTER_RE = re.compile(r"(?<![\w/])(\d+)/(\d+)(?![\w/])")
_VERSION_RE = re.compile(r"(?<!\w)v(\d+)(?!\w)", re.IGNORECASE)
_DIFF_START_RE = re.compile(rb"^(?:diff --git |--- )", re.MULTILINE)
_HAS_DIFF_RE = re.compile(rb"^(?:diff --git \S|--- \S.*\n\+\+\+ \S|Index: \S.*\n=+\n)", re.MULTILINE)
_PATHS_RE = re.compile(rb"^(?:--- a/|\+\+\+ b/|rename from |rename to |copy from |copy to )(\S+)", re.MULTILINE)
_LINK_RE = re.compile(r"^Link:\s*<?(\S+?)>?\s*$", re.MULTILINE | re.IGNORECASE)
_IN_BODY_FROM_RE = re.compile(rb"\A\s*From:\s*(.+?)\s*\n")
BARE_AUTHOR = "Unknown <unknown@kjlab.invalid>"


@dataclass(frozen=True)
class PatchMail:
    """One patch of a series, as `git am` will apply it."""

    file: Path  # the file it came from
    label: str  # how the lab names that file (a guests/kernel/patches name, else the path)
    number: int  # its place in the series read from the file, from 1
    total: int  # the series' length
    subject: str  # the mail's whole Subject ("[PATCH v2 1/3] x86: ...")
    title: str  # the subject without its [PATCH ...] prefix: the commit's title
    author: str  # From (or the in-body From: git am takes first)
    date: str
    message_id: str  # "" for a format-patch file (no Message-Id until it is sent)
    link: str  # the Link: trailer, else the mail's lore address; "" when neither is known
    raw: bytes  # the mail, the input of `git am`
    diff_sha256: str
    paths: tuple[str, ...]  # the files its diff reads or writes, relative to the tree

    @property
    def name(self) -> str:
        return self.label if self.total == 1 else f"{self.label} [{self.number}/{self.total}]"

    def provenance(self) -> dict[str, str]:
        return {"file": self.label, "subject": self.subject, "author": self.author, "date": self.date,
                "message_id": self.message_id, "link": self.link, "diff_sha256": self.diff_sha256}


def diff_sha256(text: bytes) -> str:
    """The hash of what a patch changes: its diff, from the first ``diff --git`` (or
    ``--- ``) line on, without a ``git format-patch`` signature (``-- `` and git's version).
    The commit message, the notes below its ``---`` and the sender's sign-off are left out,
    so editing them does not rebuild kernels; a changed hunk, context line or index line does."""
    m = _DIFF_START_RE.search(text)
    lines = text[m.start() if m else 0:].splitlines(keepends=True)
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].rstrip(b"\r\n") == b"-- ":
            lines = lines[:i]
            break
    return hashlib.sha256(b"".join(lines)).hexdigest()


def read_series(path: Path, label: str = "") -> list[PatchMail]:
    """The patches of a patch or mbox file, in the order `git am` must apply them.
    A file that holds no patch, an incomplete numbered series, or a numbered patch without
    a diff is a UserError naming the file."""
    label = label or str(path)
    if not path.is_file():
        raise UserError(f"patch file {path}: no such file")
    mails = [_parse(raw, path) for raw in _split(path)]
    chosen: list[tuple[EmailMessage, bytes, _Subject]] = []
    for msg, raw in mails:
        subject = _Subject.parse(str(msg.get("Subject", "")))
        body = _body(msg)
        what = f"{path}: mail {subject.text!r}"
        if subject.reply:
            log.info("%s: a reply, left out", what)
        elif subject.number == 0:
            log.info("%s: the cover letter, left out", what)
        elif not _HAS_DIFF_RE.search(body):
            if subject.number is not None:
                raise UserError(f"{what} is numbered as a patch but holds no diff")
            log.info("%s: no diff in it, left out", what)
        else:
            chosen.append((msg, raw, subject))
    if not chosen:
        raise UserError(f"patch file {path}: no patch in it ({len(mails)} mails, none with a diff that is not "
                        "a cover letter or a reply)")
    chosen = _newest_revision(path, chosen)
    chosen = _in_series_order(path, chosen)
    return [_patch(path, label, i, len(chosen), msg, raw, subject) for i, (msg, raw, subject) in enumerate(chosen, 1)]


@dataclass(frozen=True)
class _Subject:
    text: str
    reply: bool
    is_patch: bool
    number: int | None  # n of "n/N"
    total: int | None
    version: int  # v2 -> 2; 1 when not given
    title: str

    @classmethod
    def parse(cls, subject: str) -> _Subject:
        text = " ".join(subject.split())
        m = _SUBJECT_RE.match(text)
        assert m is not None  # every part of the pattern may be empty
        brackets = m.group(2)
        counter = _COUNTER_RE.search(brackets)
        version = _VERSION_RE.search(brackets)
        return cls(text, bool(m.group(1)), "patch" in brackets.lower(),
                   int(counter.group(1)) if counter else None, int(counter.group(2)) if counter else None,
                   int(version.group(1)) if version else 1, m.group(3).strip())


def _split(path: Path) -> list[bytes]:
    """The file's mails as `git am` splits them (`git mailsplit -b`: a file that is not an
    mbox is one mail)."""
    if not path.read_bytes().strip():
        return []  # git mailsplit calls an empty file an error of its own
    with tempfile.TemporaryDirectory(prefix="kjlab-mailsplit-") as tmp:
        argv = ["git", "mailsplit", "-b", f"-o{tmp}", "--", str(path)]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=MAILSPLIT_TIMEOUT)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise UserError(f"patch file {path}: git mailsplit could not read it: {e}") from None
        if proc.returncode != 0:
            raise UserError(f"patch file {path}: not a patch or mbox git can split: {proc.stderr.strip()}")
        return [p.read_bytes() for p in sorted(Path(tmp).iterdir())]


def _parse(raw: bytes, path: Path) -> tuple[EmailMessage, bytes]:
    """A mail, and the bytes `git am` gets for it: a bare diff gets a From and a Subject
    (the file's name), which git am needs."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    if msg.get("From") is None and msg.get("Subject") is None:
        header = f"From: {BARE_AUTHOR}\nSubject: [PATCH] {path.name}\n\n".encode()
        raw = header + raw
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
    elif msg.get("From") is None:
        raise UserError(f"patch file {path}: mail {str(msg.get('Subject'))!r} has no From header (git am needs "
                        "an author)")
    return msg, raw


def _body(msg: EmailMessage) -> bytes:
    """The decoded text of a mail (quoted-printable, base64, the text parts of a multipart
    mail, an attached .patch), as git mailinfo reads it."""
    parts: list[bytes] = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        filename = part.get_filename() or ""
        if part.get_content_maintype() == "text" or filename.endswith((".patch", ".diff")):
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                parts.append(payload)
    return b"\n".join(parts)


def _newest_revision(path: Path, chosen: list[tuple[EmailMessage, bytes, _Subject]]
                     ) -> list[tuple[EmailMessage, bytes, _Subject]]:
    versions = sorted({s.version for _, _, s in chosen})
    if len(versions) > 1:
        log.info("%s: revisions v%s in it; applying v%d", path, ", v".join(map(str, versions)), versions[-1])
    return [c for c in chosen if c[2].version == versions[-1]]


def _in_series_order(path: Path, chosen: list[tuple[EmailMessage, bytes, _Subject]]
                     ) -> list[tuple[EmailMessage, bytes, _Subject]]:
    """A numbered series in its numbers' order, complete and without doubles; mails
    without numbers in the file's order."""
    numbered = [c for c in chosen if c[2].number is not None]
    if len(numbered) != len(chosen):
        return chosen
    totals = {s.total for _, _, s in numbered}
    if len(totals) != 1:
        raise UserError(f"patch file {path}: its patches are numbered of different totals: "
                        + ", ".join(f"{s.number}/{s.total}" for _, _, s in numbered))
    total = totals.pop() or 0
    numbers = [s.number for _, _, s in numbered]
    doubles = sorted({n for n in numbers if numbers.count(n) > 1 and n is not None})
    if doubles:
        raise UserError(f"patch file {path}: patch {', '.join(f'{n}/{total}' for n in doubles)} is in it more "
                        "than once")
    missing = [n for n in range(1, total + 1) if n not in numbers]
    if missing:
        raise UserError(f"patch file {path}: the series is incomplete: "
                        f"{', '.join(f'[PATCH {n}/{total}]' for n in missing)} missing")
    return sorted(chosen, key=lambda c: c[2].number or 0)


def _patch(path: Path, label: str, number: int, total: int, msg: EmailMessage, raw: bytes,
           subject: _Subject) -> PatchMail:
    body = _body(msg)
    in_body = _IN_BODY_FROM_RE.match(body)
    author = in_body.group(1).decode(errors="replace") if in_body else str(msg.get("From", ""))
    message_id = str(msg.get("Message-Id", "")).strip()
    return PatchMail(
        file=path, label=label, number=number, total=total, subject=subject.text, title=subject.title,
        author=" ".join(author.split()), date=str(msg.get("Date", "")), message_id=message_id,
        link=_link(body, str(msg.get("Archived-At", "")), message_id), raw=raw,
        diff_sha256=diff_sha256(body),
        paths=tuple(dict.fromkeys(p.decode(errors="surrogateescape") for p in _PATHS_RE.findall(body))),
    )


def _link(body: bytes, archived_at: str, message_id: str) -> str:
    """The last Link: trailer of the commit message (b4 adds the patch's own there),
    else the mail's Archived-At, else its lore address from the Message-Id."""
    message = body.split(b"\n---\n", 1)[0].decode(errors="replace")
    links = _LINK_RE.findall(message)
    if links:
        return str(links[-1])
    if archived_at.strip():
        return archived_at.strip().strip("<>")
    mid = message_id.strip().strip("<>")
    return LORE + urllib.parse.quote(mid, safe="@!$&'()*+,;=:~._-") if mid else ""
