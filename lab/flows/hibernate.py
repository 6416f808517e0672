"""The ten steps of seed 004 (kexec jump hibernation), driven for real.

A boots; loads B with --load-preserve-context; jumps (kexec -e); B saves A's memory
from /proc/vmcore to the hibernation disk and powers off (QEMU exits: -no-reboot);
a new QEMU boots C on the same disk; C loads the image with --entry=the jump-back
entry; kexec -e jumps back into A, whose shell returns from its own `kexec -e`.
"""

from __future__ import annotations

import logging

from ..image_tools import split_image_on_disk
from ..vm import QemuVM
from .common import FlowContext

log = logging.getLogger(__name__)


class HibernateFlow(FlowContext):
    def run(self) -> None:
        with self.vm_a() as vm:
            self.boot_a(vm)
            if self.sc.flow.save == "makedumpfile":
                self.save_vmcoreinfo(vm)
            self.load_b(vm)
            self.snapshot(vm, "A-before-jump", "Memory snapshot of A before the jump")
            self.a_marker = self.jump_to_b(vm)
            self.save_image_b(vm)
            self.power_off(vm)
        if self.sc.flow.split_image_segments:
            self.split_image()
        with self.vm("C-A", "console=ttyS0 loglevel=7 kjlab.role=C", self.art.initrd_c,
                     memory_mib=self.sc.c_memory_mib) as vm:
            self.boot_c(vm)
            self.load_image(vm)
            self.jump_back(vm)
            self.verify_a(vm)
            self.snapshot(vm, "A-resumed", "Memory snapshot of A after resume")

    def save_vmcoreinfo(self, vm: QemuVM) -> None:
        """makedumpfile in B needs A's VMCOREINFO, which the vmcore of a preserve-context
        load lacks (facts: makedumpfile): A puts it on the disk before the jump."""
        with self.rec.step("vmcoreinfo-A", "Save A's VMCOREINFO to the disk for makedumpfile", "-", vm):
            self.run_ok(vm, f"mount -t ext2 {self.disk_dev} /mnt && kj-vmcoreinfo > /mnt/vmcoreinfo && "
                            "head -n 2 /mnt/vmcoreinfo && umount /mnt", verdict="CHECK_FAILED")

    def split_image(self) -> None:
        n = self.sc.flow.split_image_segments
        with self.rec.step("split-image", f"Host: rewrite the saved image into {n} PT_LOAD segments (test option)", "-", None):
            detail = split_image_on_disk(self.art.disk, "dump.elf", n, self.run_dir)
            self.rec.note(f"split dump.elf into {n} PT_LOADs", detail)

    def boot_c(self, vm: QemuVM) -> None:
        with self.rec.step("boot-C", "Boot kernel C on the same disk", "8", vm):
            self.wait_ready(vm, "C")

    def load_image(self, vm: QemuVM) -> None:
        with self.rec.step("load-image", "Load A's image with kexec -l --args-none --entry=<jump-back entry>", "9", vm):
            self.run_ok(vm, f"mount -t ext2 {self.disk_dev} /mnt && ls -l /mnt && cat /mnt/kexec_jump_back_entry",
                        verdict="CHECK_FAILED")
            self.with_iomem_filter(vm, lambda: self.run_ok(
                vm, f"{self.kexec()} -l --args-none --entry=$(cat /mnt/kexec_jump_back_entry) /mnt/dump.elf", "load"))
            self.run_ok(vm, "umount /mnt", verdict="CHECK_FAILED")

    def jump_back(self, vm: QemuVM) -> None:
        with self.rec.step("jump-back", "kexec -e in C: jump back to kernel A", "10", vm), self.interrupt_logging(vm):
            vm.console.send_line("kexec -x -e")
            self.rec.note("kexec -x -e")
            self.jump_returned(vm, self.a_marker, "A")
