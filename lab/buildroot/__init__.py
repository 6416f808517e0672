"""The guest initramfs built with Buildroot (`[guest] recipe = "buildroot"`).

- `tree`: the Buildroot release (unpacked once, cached) and what a configuration needs
  from it (`make show-info`: each package's version, source file, hashes, patches);
- `debian_sources`: the optional offline layer - every source from a Debian source package
  (byte-identical upstream tarballs into BR2_DL_DIR, checked by Buildroot's hashes; other
  versions as <PKG>_OVERRIDE_SRCDIR);
- `vendored`: Buildroot's own files kept in buildroot-offline/dl/ for what no Debian suite
  serves (makedumpfile), taken first, refused unless Buildroot's hash matches;
- `build`: `make` in an output directory kept under the cache, with progress;
- `image`: the gzip'd cpio of Buildroot's target tree plus the lab's guest programs, once
  every program in it is seen to find its interpreter and libraries in it.

The recipe itself (`buildroot-config/`, a BR2_EXTERNAL tree) needs none of this machine's
workarounds: with `KJLAB_BUILDROOT_SOURCES=upstream` Buildroot downloads its sources itself.
"""
