"""The ten steps of seed 004 (kexec jump hibernation), driven for real.

A boots; loads B with --load-preserve-context; jumps (kexec -e); B saves A's memory
from /proc/vmcore to the hibernation disk and powers off (QEMU exits: -no-reboot);
a new QEMU boots C on the same disk; C loads the image with --entry=the jump-back
entry; kexec -e jumps back into A, whose shell returns from its own `kexec -e`.
"""

from __future__ import annotations

import logging

from pathlib import Path

from ..image_tools import corrupt_image_on_disk, read_from_disk, split_image_on_disk
from ..memcheck import check_image
from ..vm import QemuVM
from .base import FlowStop
from .common import FlowContext

log = logging.getLogger(__name__)


class HibernateFlow(FlowContext):
    def run(self) -> None:
        with self.vm_a() as vm:
            self.boot_a(vm)
            if self.sc.flow.save == "makedumpfile":
                self.save_vmcoreinfo(vm)
            self.load_b(vm)
            before = self.snapshot(vm, "A-before-jump", "Memory snapshot of A before the jump")
            self.a_marker = self.jump_to_b(vm)
            in_b = self.snapshot(vm, "B-booted", "Memory snapshot in kernel B (A's memory as B saves it)")
            self.save_image_b(vm)
            self.power_off(vm)
        if self.sc.flow.split_image_segments:
            self.split_image()
        if self.sc.flow.corrupt_image_pages:
            self.corrupt_image()
        image_problem = self.check_image(in_b, before)
        try:
            with self.vm("C-A", "console=ttyS0 loglevel=7 kjlab.role=C", self.art.initrd_c,
                         memory_mib=self.sc.c_memory_mib) as vm:
                self.boot_c(vm)
                self.load_image(vm)
                self.jump_back(vm)
                self.verify_a(vm)
                after = self.snapshot(vm, "A-resumed", "Memory snapshot of A after resume")
            self.check_memory(before, after)
        except FlowStop as later:
            if image_problem is None:
                raise
            # The damaged image is the cause; what the resume then did is more evidence.
            raise FlowStop(image_problem.verdict, image_problem.reason,
                           [*image_problem.evidence, f"-- then, at {self.rec.result.steps[-1].name}: {later.verdict}: "
                            f"{later.reason} --", *later.evidence]) from None
        if image_problem is not None:
            raise image_problem

    def check_image(self, b_snapshot: Path, a_before: Path) -> FlowStop | None:
        """Host: the saved image against A's memory in B and A's sentinel pages (lab.memcheck)."""
        with self.rec.step("check-image", "Host: the saved image against A's memory and its sentinel pages", "-", None):
            local = read_from_disk(self.art.disk, "dump.elf", self.run_dir / "dump.elf.check")
            try:
                finding = check_image(local, b_snapshot, a_before, self.plan, self.sc.flow.b_window)
            finally:
                local.unlink(missing_ok=True)
            self.rec.result.memory["image_check"] = finding.data
            self.rec.result.memory["image_bad_ranges"] = finding.bad_ranges
            self.rec.note("image check", "\n".join(finding.problems) or "every page and every sentinel page held")
            if finding.problems:
                step = self.rec.current
                assert step is not None
                step.outcome = "failed"
                step.message = "the image is damaged; the resume goes on to show what it does"
                return FlowStop("CORRUPT_IMAGE", "the saved image does not hold A's memory", finding.problems)
        return None

    def corrupt_image(self) -> None:
        n = self.sc.flow.corrupt_image_pages
        with self.rec.step("corrupt-image", f"Host: damage {n} sentinel pages of the saved image (test option)", "-", None):
            hit = corrupt_image_on_disk(self.art.disk, "dump.elf", self.plan.token, n, self.run_dir)
            self.rec.note(f"flipped a word in {len(hit)} sentinel pages", ", ".join(f"0x{p:x}" for p in hit[:20]))

    def save_vmcoreinfo(self, vm: QemuVM) -> None:
        """makedumpfile in B needs A's VMCOREINFO, which the vmcore of a preserve-context
        load lacks (facts: makedumpfile): A puts it on the disk before the jump."""
        with self.rec.step("vmcoreinfo-A", "Save A's VMCOREINFO to the disk for makedumpfile", "-", vm):
            self.run_ok(vm, f"kj-mount-disk {self.disk_dev}", verdict="CHECK_FAILED")
            try:
                self.run_ok(vm, "kj-vmcoreinfo > /mnt/vmcoreinfo && head -n 2 /mnt/vmcoreinfo", verdict="CHECK_FAILED")
            finally:  # A must not keep the disk mounted across the jump: B writes it
                self.run_ok(vm, "umount /mnt", verdict="CHECK_FAILED")

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
            self.run_ok(vm, f"kj-mount-disk {self.disk_dev} && ls -l /mnt && cat /mnt/kexec_jump_back_entry",
                        verdict="CHECK_FAILED")
            self.with_iomem_filter(vm, lambda: self.run_ok(
                vm, f"{self.kexec()} -l --args-none --entry=$(cat /mnt/kexec_jump_back_entry) /mnt/dump.elf", "load"))
            self.run_ok(vm, "umount /mnt", verdict="CHECK_FAILED")

    def jump_back(self, vm: QemuVM) -> None:
        with self.rec.step("jump-back", "kexec -e in C: jump back to kernel A", "10", vm), self.interrupt_logging(vm):
            vm.console.send_line("kexec -x -e")
            self.rec.note("kexec -x -e")
            self.jump_returned(vm, self.a_marker, "A")
