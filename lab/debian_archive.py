"""Debian packages from the archive without changing the machine's apt or dpkg configuration.

apt reads a private sources list and keeps its lists and caches in a private directory under
the kjlab cache (`apt/<suite>-<arch>/`); `-o APT::Architecture=...` selects the foreign
architecture without `dpkg --add-architecture`. Downloaded .debs are kept in
`debs/<arch>/` under the cache, verified by SHA256, and never downloaded twice.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .cache import cache_root, hash_file
from .errors import BuildError, CommandFailed, UserError
from .proc import run

log = logging.getLogger(__name__)

HOST_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
FALLBACK_URI = "http://deb.debian.org/debian"
FALLBACK_SECURITY_URI = "http://deb.debian.org/debian-security"
# Older releases whose newest kernels are only in their security suite (bullseye's 5.10:
# 5.10.223 in the suite, 5.10.2xx in bullseye-security). The lab takes `<suite>-security` for
# them even when the host's sources do not list it, from the host's security mirror. Other
# suites get their security suite only when the host lists it (a sid has none, and trixie's
# kernels stay the ones the lab's results were measured on).
SECURITY_SUITES = frozenset({"bullseye"})
LISTS_MAX_AGE = 24 * 3600  # refresh the lists at most once a day
PARTIAL_MAX_AGE = 3600  # ... or once an hour when an optional index (security) failed
UPDATE_ATTEMPTS = 3
UPDATE_BACKOFF = (5.0, 15.0)  # seconds between attempts: the archive may be mid-sync
APT_TIMEOUT = 600.0  # apt-get update / download: a hung mirror or proxy ends here
APT_CACHE_TIMEOUT = 120.0  # apt-cache on local lists
DPKG_TIMEOUT = 300.0  # dpkg-deb reading or unpacking one .deb

# What may reach apt's command line or a sources list. A package name by Debian Policy
# 5.6.1 (so "-o..." can never be read as an apt option); a suite name without spaces or
# newlines (it is written into a sources.list line).
PACKAGE_RE = re.compile(r"[a-z0-9][a-z0-9+.-]+")
VERSION_RE = re.compile(r"[0-9][A-Za-z0-9.+~:-]*")
SUITE_RE = re.compile(r"[a-z][a-z0-9-]{1,30}")


def check_suite(suite: str) -> str:
    if not SUITE_RE.fullmatch(suite):
        raise UserError(f"Debian suite {suite!r}: expected 2 to 31 of a-z 0-9 - starting with a letter "
                        "(e.g. bookworm, trixie, sid)")
    return suite


def check_arch(arch: str) -> str:
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,30}", arch):
        raise UserError(f"Debian architecture {arch!r}: expected e.g. i386, amd64, all")
    return arch


def check_spec(spec: str) -> str:
    """A package for apt: "name" or "name=version", each part by Debian's own rules."""
    name, eq, version = spec.partition("=")
    if not PACKAGE_RE.fullmatch(name):
        raise UserError(f"{spec!r}: {name!r} is not a Debian package name (lower-case letters, digits, + . -; "
                        "at least 2, starting with a letter or digit)")
    if eq and not VERSION_RE.fullmatch(version):
        raise UserError(f"{spec!r}: {version!r} is not a Debian version")
    return spec


@dataclass(frozen=True)
class PackageInfo:
    """One package version as the apt lists describe it (the candidate, or a pinned one)."""

    name: str
    version: str
    architecture: str  # the .deb's own: the requested arch or "all"
    filename: str  # path in the pool
    size: int
    sha256: str
    depends: tuple[str, ...]  # Pre-Depends + Depends, see parse_depends

    @property
    def deb_name(self) -> str:
        """The file name `apt-get download` gives it (the epoch colon is quoted)."""
        return f"{self.name}_{self.version.replace(':', '%3a')}_{self.architecture}.deb"


# -- sources and apt options --------------------------------------------------------------


def _deb822_stanzas(text: str) -> list[dict[str, str]]:
    stanzas: list[dict[str, str]] = []
    current: dict[str, str] = {}
    key = ""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        if not line.strip():
            if current:
                stanzas.append(current)
            current, key = {}, ""
        elif line[0].isspace() and key:
            current[key] += "\n" + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            key = key.strip()
            current[key] = value.strip()
    if current:
        stanzas.append(current)
    return stanzas


SOURCE = "source"  # the "arch" of the private lists of source packages (deb-src)


def sources_lines(suite: str, host_sources: Path = HOST_SOURCES, kind: str = "deb") -> list[str]:
    """One-line sources for `suite` (+ `suite`-security when the host lists it, or when the
    suite is in SECURITY_SUITES); `kind` "deb" (binary packages) or "deb-src" (source packages).

    The URIs come from the host's deb822 sources so that the same mirror (or proxy) is
    used; a security suite the host does not list takes the URI of the host's own security
    suite (any `*-security` stanza), else FALLBACK_SECURITY_URI. `-updates` is left out on
    purpose: the lab wants the suite plus security fixes, nothing else. Nothing here
    changes the host's apt sources: the lines go into the lab's private lists only.
    """
    check_suite(suite)
    stanzas = []
    if host_sources.is_file():
        stanzas = [s for s in _deb822_stanzas(host_sources.read_text()) if "deb" in s.get("Types", "").split()]
    else:
        log.warning("%s missing; using %s", host_sources, FALLBACK_URI)

    def line(stanza: dict[str, str] | None, uri: str, name: str) -> str:
        signed = (stanza or {}).get("Signed-By", "")
        # an inline key block cannot go into a one-line source; apt then uses its keyrings
        opts = f"[signed-by={signed}] " if signed.startswith("/") and "\n" not in signed else ""
        components = (stanza or {}).get("Components", "main")
        return f"{kind} {opts}{uri} {name} {components}"

    def uri_of(stanza: dict[str, str]) -> str:
        return stanza["URIs"].split()[0]

    main = next((s for s in stanzas if suite in s.get("Suites", "").split()), None)
    if main is None:  # another suite: reuse the URI of the host's own main suite
        main = next((s for s in stanzas if any("-" not in x for x in s.get("Suites", "").split())), None)
    lines = [line(main, uri_of(main) if main else FALLBACK_URI, suite)]
    security = next((s for s in stanzas if f"{suite}-security" in s.get("Suites", "").split()), None)
    if security is not None:
        lines.append(line(security, uri_of(security), f"{suite}-security"))
    elif suite in SECURITY_SUITES:
        other = next((s for s in stanzas if any(x.endswith("-security") for x in s.get("Suites", "").split())), None)
        lines.append(line(other or main, uri_of(other) if other else FALLBACK_SECURITY_URI, f"{suite}-security"))
    return lines


def apt_dir(suite: str, arch: str) -> Path:
    check_suite(suite)
    check_arch(arch)
    return cache_root() / "apt" / f"{suite}-{arch}"


def apt_options(suite: str, arch: str) -> list[str]:
    """The -o options that point apt at the private state of (suite, arch)."""
    base = apt_dir(suite, arch)
    # source lists have no architecture; apt's own (the host's) is then harmless
    arches = {} if arch == SOURCE else {"APT::Architecture": arch, "APT::Architectures": arch}
    opts = {
        **arches,
        "Dir::State::Lists": f"{base}/lists",
        # the host's dpkg status lists amd64 packages; an empty one keeps it out of the picture
        "Dir::State::status": f"{base}/status",
        "Dir::Etc::SourceList": f"{base}/sources.list",
        "Dir::Etc::SourceParts": "/dev/null",
        "Dir::Cache": f"{base}/cache",
        # the docker image disables the binary caches; ours are private, keep them (fast apt-cache)
        "Dir::Cache::pkgcache": "pkgcache.bin",
        "Dir::Cache::srcpkgcache": "srcpkgcache.bin",
        "APT::Sandbox::User": "root",  # the _apt user cannot write into our cache
    }
    return [arg for k, v in opts.items() for arg in ("-o", f"{k}={v}")]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# -- update -------------------------------------------------------------------------------


def ensure_lists(suite: str, arch: str, log_path: Path | None = None, force: bool = False) -> None:
    """Make the private apt lists of (suite, arch) present and at most a day old."""
    base = apt_dir(suite, arch)
    (base / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (base / "cache").mkdir(parents=True, exist_ok=True)
    (base / "status").touch()
    sources = "\n".join(sources_lines(suite, kind="deb-src" if arch == SOURCE else "deb")) + "\n"
    with _locked(base / "lock"):
        stamp = base / "updated"
        src_file = base / "sources.list"
        same_sources = src_file.is_file() and src_file.read_text() == sources
        if not force and same_sources and stamp.is_file():
            max_age = LISTS_MAX_AGE if stamp.read_text().strip() == "ok" else PARTIAL_MAX_AGE
            if time.time() - stamp.stat().st_mtime < max_age:
                return
        src_file.write_text(sources)
        stamp.unlink(missing_ok=True)
        stamp.write_text(_update(suite, arch, log_path) + "\n")


def _update(suite: str, arch: str, log_path: Path | None) -> str:
    """Run `apt-get update` with retries; return "ok" or "partial" (optional index missing)."""
    argv = ["apt-get", *apt_options(suite, arch), "update"]
    failed: list[str] = []
    for attempt in range(1, UPDATE_ATTEMPTS + 1):
        errors: list[str] = []

        def on_line(line: str) -> None:
            if line.startswith(("Err:", "E: ", "W: ")):
                errors.append(line)
            elif errors and errors[-1].startswith("Err:") and line.startswith("  ") and "|" not in errors[-1]:
                errors[-1] += " | " + line.strip()  # the reason, e.g. "File has unexpected size"

        try:
            run(argv, log_path=log_path, on_line=on_line, tail_lines=60, timeout=APT_TIMEOUT)
            log.info("apt lists for %s/%s updated", suite, arch)
            return "ok"
        except CommandFailed as exc:
            failed = [e for e in errors if e.startswith("Err:")] or errors or [exc.log_tail]
            log.warning("apt-get update %s/%s, attempt %d/%d failed: %s", suite, arch, attempt,
                        UPDATE_ATTEMPTS, "; ".join(failed))
            if attempt < UPDATE_ATTEMPTS:
                time.sleep(UPDATE_BACKOFF[min(attempt - 1, len(UPDATE_BACKOFF) - 1)])
    # The archive is sometimes inconsistent for hours ("File has unexpected size ... Mirror
    # sync in progress?"), often for the small security index. Without the main suite's index
    # nothing can be done; without the security one, the versions used are still recorded.
    if _has_index(suite, arch):
        log.warning("apt lists for %s/%s are incomplete (%s); continuing with what is there "
                    "(package versions are recorded in the provenance)", suite, arch, "; ".join(failed))
        return "partial"
    raise BuildError(f"apt-get update for {suite}/{arch} failed {UPDATE_ATTEMPTS} times:\n  " + "\n  ".join(failed))


def _has_index(suite: str, arch: str) -> bool:
    lists = apt_dir(suite, arch) / "lists"
    index = "source_Sources" if arch == SOURCE else f"binary-{arch}_Packages"
    return any(lists.glob(f"*_dists_{suite}_*_{index}*"))


# -- metadata -----------------------------------------------------------------------------


def parse_depends(field: str) -> list[str]:
    """Names from a Depends-like field: first alternative, no version, no :any/:arch."""
    names = []
    for clause in field.split(","):
        first = clause.split("|")[0].strip()
        if first:
            name = re.split(r"[\s(\[<]", first, maxsplit=1)[0].split(":")[0]
            if name not in names:
                names.append(name)
    return names


def _control_stanzas(text: str) -> list[dict[str, str]]:
    return [s for s in _deb822_stanzas(text) if "Package" in s]


def show(specs: list[str], arch: str, suite: str = "bookworm", log_path: Path | None = None) -> dict[str, PackageInfo]:
    """PackageInfo of each spec ("name" = candidate, or "name=version") from the apt lists.

    Purely virtual names are absent from the result (apt prints a note, no stanza). Answers
    are memoized until the next `apt-get update` (apt-cache takes ~0.2 s a call), so a
    cached build resolves its versions without running apt at all.
    """
    if not specs:
        return {}
    for spec in specs:
        check_spec(spec)
    ensure_lists(suite, arch, log_path)
    memo = _Memo(apt_dir(suite, arch))
    todo = [spec for spec in dict.fromkeys(specs) if spec not in memo.specs]
    if todo:
        try:
            out = run(["apt-cache", *apt_options(suite, arch), "show", "--no-all-versions", "--", *todo],
                      timeout=APT_CACHE_TIMEOUT)
        except CommandFailed as exc:
            raise BuildError(f"{suite}/{arch}: apt-cache show {' '.join(todo)}: {exc.log_tail}") from exc
        got = {i.name: i for i in map(_package_info, _control_stanzas(out))}
        for spec in todo:
            info = got.get(spec.split("=")[0])
            memo.specs[spec] = asdict(info) if info else None
        memo.save()
    infos = {}
    for spec in specs:
        if (fields := memo.specs[spec]) is not None:
            infos[fields["name"]] = PackageInfo(**{**fields, "depends": tuple(fields["depends"])})
    return infos


def _package_info(s: dict[str, str]) -> PackageInfo:
    depends = parse_depends(s.get("Pre-Depends", "")) + parse_depends(s.get("Depends", ""))
    return PackageInfo(
        name=s["Package"],
        version=s["Version"],
        architecture=s["Architecture"],
        filename=s["Filename"],
        size=int(s["Size"]),
        sha256=s["SHA256"],
        depends=tuple(dict.fromkeys(depends)),
    )


class _Memo:
    """apt-cache answers for (suite, arch), valid while the lists' update stamp is unchanged."""

    def __init__(self, base: Path) -> None:
        self.path = base / "show-memo.json"
        self.tag = str((base / "updated").stat().st_mtime_ns)
        data: dict[str, Any] = {}
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            pass
        self.specs: dict[str, dict[str, Any] | None] = data.get("specs", {}) if data.get("tag") == self.tag else {}

    def save(self) -> None:
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}")
        tmp.write_text(json.dumps({"tag": self.tag, "specs": self.specs}, sort_keys=True))
        os.replace(tmp, self.path)


# -- download -----------------------------------------------------------------------------


def debs_dir(arch: str) -> Path:
    path = cache_root() / "debs" / arch
    path.mkdir(parents=True, exist_ok=True)
    return path


def _sha256(path: Path) -> str:
    return hash_file(path)


def _place(src: Path, dst: Path) -> None:
    """Put src at dst (hard link when possible), atomically replacing dst."""
    if dst.exists() and os.path.samefile(src, dst):
        return
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copy2(src, tmp)
    os.replace(tmp, dst)


def fetch_debs(
    packages: list[str], arch: str, dest: Path, suite: str = "bookworm", log_path: Path | None = None
) -> dict[str, Path]:
    """Download the .debs of `packages` ("name" or "name=version") into dest; {name: path}.

    Versions are the candidates of the private lists (suite + its security suite) unless
    pinned. A .deb already in the cache (same name, same SHA256) is not downloaded again.
    """
    dest.mkdir(parents=True, exist_ok=True)
    infos = show(packages, arch, suite, log_path)
    wanted = [p.split("=")[0] for p in packages]
    missing = [name for name in wanted if name not in infos]
    if missing:
        raise BuildError(f"{suite}/{arch}: no installable package for {', '.join(missing)} (virtual or unknown)")
    cache = debs_dir(arch)
    to_get = [i for i in infos.values() if not _cached_ok(cache / i.deb_name, i)]
    if to_get:
        log.info("downloading %s", ", ".join(f"{i.name}={i.version}" for i in to_get))
        for i in to_get:
            (dest / i.deb_name).unlink(missing_ok=True)
        run(["apt-get", *apt_options(suite, arch), "download", "--",
             *(check_spec(f"{i.name}={i.version}") for i in to_get)],
            log_path=log_path, cwd=dest, timeout=APT_TIMEOUT)
        for i in to_get:
            got = dest / i.deb_name
            if not got.is_file() or _sha256(got) != i.sha256:
                raise BuildError(f"{got}: missing after apt-get download or SHA256 differs from the lists")
            _place(got, cache / i.deb_name)
    result = {}
    for name in wanted:
        info = infos[name]
        _place(cache / info.deb_name, dest / info.deb_name)
        result[name] = dest / info.deb_name
    return result


def _cached_ok(path: Path, info: PackageInfo) -> bool:
    if not path.is_file():
        return False
    if path.stat().st_size == info.size and _sha256(path) == info.sha256:
        return True
    log.warning("%s: cached .deb does not match the lists; downloading again", path)
    return False


# -- reading .debs ------------------------------------------------------------------------


def package_field(deb: Path, field: str) -> str:
    return run(["dpkg-deb", "-f", str(deb), field], timeout=DPKG_TIMEOUT).strip()


def package_version(deb: Path) -> str:
    return package_field(deb, "Version")


def package_depends(deb: Path) -> list[str]:
    """Names from the Depends field (first alternative, no version constraint, no :any)."""
    return parse_depends(package_field(deb, "Depends"))


def package_files(deb: Path) -> list[str]:
    """Paths (relative, no "./") of the files, links and directories the package ships."""
    paths = []
    for line in run(["dpkg-deb", "-c", str(deb)], timeout=DPKG_TIMEOUT).splitlines():
        fields = line.split(None, 5)
        if len(fields) == 6:
            name = fields[5].split(" -> ")[0] if fields[0].startswith("l") else fields[5]
            name = name.removeprefix("./").rstrip("/")
            if name:
                paths.append(name)
    return paths


def extract(deb: Path, dest: Path, log_path: Path | None = None) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    run(["dpkg-deb", "-x", str(deb), str(dest)], log_path=log_path, timeout=DPKG_TIMEOUT)


# -- source packages ----------------------------------------------------------------------


@dataclass(frozen=True)
class SourceFile:
    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class SourcePackage:
    """One version of a source package as the private deb-src lists of `suite` describe it."""

    name: str
    version: str
    suite: str
    files: tuple[SourceFile, ...]  # the .dsc, the .orig tarball(s), the Debian changes

    @property
    def upstream_version(self) -> str:
        """1:1.38.0-3 -> 1.38.0; 1.3.dfsg+really1.3.2-4 stays 1.3.dfsg+really1.3.2."""
        v = self.version.split(":", 1)[-1]
        return v.rsplit("-", 1)[0] if "-" in v else v

    @property
    def orig_tarballs(self) -> tuple[SourceFile, ...]:
        """The upstream tarball(s) (a native package: its only tarball)."""
        tars = [f for f in self.files if ".tar." in f.name and not f.name.endswith(".asc")]
        orig = [f for f in tars if ".orig." in f.name or ".orig-" in f.name]
        return tuple(orig or tars)


def source_versions(name: str, suite: str, log_path: Path | None = None) -> list[SourcePackage]:
    """Every version of source package `name` in the suite's (and its security suite's) lists."""
    check_spec(name)
    ensure_lists(suite, SOURCE, log_path)
    try:
        out = run(["apt-cache", *apt_options(suite, SOURCE), "showsrc", "--", name], timeout=APT_CACHE_TIMEOUT)
    except CommandFailed:
        return []  # apt-cache exits 100 on a name it does not know
    found = []
    for s in _deb822_stanzas(out):
        if s.get("Package") != name or "Version" not in s:
            continue
        files = []
        for line in s.get("Checksums-Sha256", "").splitlines():
            fields = line.split()
            if len(fields) == 3:
                files.append(SourceFile(fields[2], int(fields[1]), fields[0]))
        found.append(SourcePackage(name, s["Version"], suite, tuple(files)))
    return found


def sources_dir(name: str) -> Path:
    path = cache_root() / "sources" / check_spec(name)
    path.mkdir(parents=True, exist_ok=True)
    return path


def fetch_orig_tarballs(src: SourcePackage, log_path: Path | None = None) -> dict[str, Path]:
    """The upstream tarball(s) of `src`, {file name: path} in the sources cache.

    `apt-get source --download-only --tar-only` checks each file against the hash of the
    Sources index, which the suite's Release file signs; the files are checked again here
    against the same stanza (and when reused from the cache). BuildError with apt's reasons
    (a 404: the archive no longer holds that version) when a file cannot be had.
    """
    return _fetch_source_files(src, src.orig_tarballs, ["--tar-only"], log_path)


def fetch_source_package(src: SourcePackage, log_path: Path | None = None) -> Path:
    """Every file of `src` (.dsc, upstream tarball(s), Debian changes) in the sources cache,
    checked like fetch_orig_tarballs; returns the .dsc, for `dpkg-source -x`."""
    got = _fetch_source_files(src, src.files, [], log_path)
    dsc = [path for name, path in got.items() if name.endswith(".dsc")]
    if len(dsc) != 1:
        raise BuildError(f"{src.suite}: source package {src.name} {src.version} lists {len(dsc)} .dsc files")
    return dsc[0]


def _fetch_source_files(src: SourcePackage, wanted: tuple[SourceFile, ...], apt_args: list[str],
                        log_path: Path | None) -> dict[str, Path]:
    dest = sources_dir(src.name)
    if not wanted:
        raise BuildError(f"{src.suite}: source package {src.name} {src.version} lists no tarball")
    with _locked(dest / ".lock"):
        todo = [f for f in wanted if not (dest / f.name).is_file() or _sha256(dest / f.name) != f.sha256]
        if todo:
            errors: list[str] = []
            try:
                run(["apt-get", *apt_options(src.suite, SOURCE), "source", "--download-only", *apt_args, "--",
                     check_spec(f"{src.name}={src.version}")], log_path=log_path, cwd=dest, timeout=APT_TIMEOUT,
                    on_line=lambda line: errors.append(line) if line.startswith("E: Failed to fetch") else None)
            except CommandFailed as exc:
                reasons = errors or [exc.log_tail]
                raise BuildError(f"{src.suite}: source package {src.name} {src.version}: "
                                 + "; ".join(r.removeprefix("E: ") for r in reasons)) from exc
        for f in wanted:
            got = dest / f.name
            if not got.is_file() or _sha256(got) != f.sha256:
                raise BuildError(f"{got}: missing after apt-get source or its SHA256 differs from the "
                                 f"{src.suite} Sources index ({f.sha256})")
    return {f.name: dest / f.name for f in wanted}
