# kjlab's offline layer (lab/buildroot/debian_toolchain.py): Debian's i686 cross toolchain
# as Buildroot's external toolchain.
#
# Buildroot refuses distribution toolchains (check_unusable_toolchain, toolchain/helpers.mk):
# configured --with-sysroot=/, without --sysroot they read the host's /usr/include and
# /lib. The lab gives Buildroot a hard-linked copy of Debian's toolchain whose tool
# directory (usr/i686-linux-gnu: glibc 2.36, headers 6.1) is laid out as a sysroot, and
# Buildroot's toolchain wrapper passes --sysroot=$(STAGING_DIR) to every compile, so
# nothing of the host comes in. This is Buildroot's check without the --with-sysroot=/
# test; the other tests stand.
check_unusable_toolchain = \
	__CROSS_CC=$(strip $1) ; \
	__TOOLCHAIN_CFLAGS=$(strip $2) ; \
	libc_a_path=`$${__CROSS_CC} -print-file-name=libc.a` ; \
	if test "$${libc_a_path}" = "libc.a" ; then \
		echo "Unable to detect the toolchain sysroot, Buildroot cannot use this toolchain." ; \
		exit 1 ; \
	fi ; \
	libc_a_archsysroot_path=`$${__CROSS_CC} $${__TOOLCHAIN_CFLAGS} -print-file-name=libc.a` ; \
	if test "$${libc_a_archsysroot_path}" = "libc.a" ; then \
		echo "Unable to detect the toolchain architecture sysroot." ; \
		exit 1 ; \
	fi; \
	sysroot_dir="$(call toolchain_find_sysroot,$${__CROSS_CC})" ; \
	if test -z "$${sysroot_dir}" ; then \
		echo "External toolchain doesn't support --sysroot. Cannot use." ; \
		exit 1 ; \
	fi
