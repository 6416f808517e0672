"""`git am` of a patch series onto a kernel tree that is not a git repository.

The tree is the build's hard-linked copy of a cached source. Committing the whole tree
(some 75 000 files) first would cost a minute of every build; git am needs only the files
the patches touch in its index. So a throwaway repository, kept apart from the tree
(`--git-dir`, `--work-tree`: no `.git` in the tree, which would change the kernel's
release string), commits just those files and `git am` applies the mails one by one. That
is git am's own mail parsing, patch order, author and all-or-nothing application; a
patch that does not apply fails the build with its subject. git writes a file it patches
as a new file (unlink, create), and the files to touch are copied first anyway, so the
cached source behind the hard links is never changed.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Sequence

from ..errors import BuildError, CommandFailed
from ..proc import run
from .patch_mail import PatchMail

log = logging.getLogger(__name__)

GIT_TIMEOUT = 300.0
COMMITTER = ("kjlab", "kjlab@kjlab.invalid")


class PatchDoesNotApply(BuildError):
    def __init__(self, mail: PatchMail, tree: str, details: list[str]) -> None:
        self.mail = mail
        super().__init__(f"patch {mail.name} \"{mail.subject}\" does not apply to {tree}"
                         + "".join(f"\n    {line}" for line in details))


def git_env() -> dict[str, str]:
    """git without the user's or the system's configuration (no hooks, no am.threeWay,
    no signing) and without a GIT_DIR inherited from a caller (git bisect run, a hook)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull,
               GIT_COMMITTER_NAME=COMMITTER[0], GIT_COMMITTER_EMAIL=COMMITTER[1])
    return env


def apply_series(tree: Path, mails: Sequence[PatchMail], git_dir: Path, what: str, log_path: Path | None) -> None:
    """`git am` each mail onto `tree` in order; `git_dir` is a new directory for the
    throwaway repository; `what` names the source in an error."""
    env = git_env()
    paths = sorted({p for m in mails for p in m.paths})
    _unshare(tree, paths)
    run(["git", "init", "-q", "--template=", str(git_dir)], log_path=log_path, env=env, timeout=GIT_TIMEOUT)
    git = ["git", f"--git-dir={git_dir / '.git'}", f"--work-tree={tree}", "-c", "core.hooksPath=/dev/null",
           "-c", "commit.gpgsign=false", "-c", "core.autocrlf=false", "-c", f"user.name={COMMITTER[0]}",
           "-c", f"user.email={COMMITTER[1]}"]
    present = [p for p in paths if (tree / p).is_file() or (tree / p).is_symlink()]
    if present:
        run([*git, "add", "-f", "--", *present], cwd=tree, log_path=log_path, env=env, timeout=GIT_TIMEOUT)
    run([*git, "commit", "-q", "--allow-empty", "--no-verify", "-m", f"{what}: the files the patches touch"],
        cwd=tree, log_path=log_path, env=env, timeout=GIT_TIMEOUT)
    for i, mail in enumerate(mails, 1):
        mbox = git_dir / f"{i:04d}.mail"
        mbox.write_bytes(mail.raw)
        log.info("git am %s: %s", mail.name, mail.subject)
        try:
            run([*git, "am", "-q", "--", str(mbox)], cwd=tree, log_path=log_path, env=env, timeout=GIT_TIMEOUT)
        except CommandFailed as e:
            raise PatchDoesNotApply(mail, what, _why(e.log_tail)) from e


def _unshare(tree: Path, paths: list[str]) -> None:
    """Replace each file a patch touches by a copy of its own: never write through a hard link."""
    for rel in paths:
        target = tree / rel
        if target.is_file() and not target.is_symlink() and target.stat().st_nlink > 1:
            data = target.read_bytes()
            mode = target.stat().st_mode
            target.unlink()
            target.write_bytes(data)
            target.chmod(mode & 0o7777)


def _why(log_tail: str) -> list[str]:
    """git am's own account of the failure: its error lines."""
    lines = [line.strip() for line in log_tail.splitlines()]
    wanted = [line for line in lines if re.match(r"(error|fatal|Patch failed|Applying):?", line)]
    return (wanted or lines)[-8:]
