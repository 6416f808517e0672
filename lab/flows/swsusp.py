"""swsusp, the peer: the kernel's own hibernation on the same VM and kernel as kexec jump.

A boots with a swap disk (a second disk) and resume= naming it; swapon; `echo disk >
/sys/power/state` writes A's image to swap and powers off (with no ACPI the kernel halts,
"reboot: System halted", and QEMU is told to quit; in `reboot` mode the machine ends
and QEMU holds it, lab.vm); a new QEMU boots the same kernel with the same command line, which finds
the image on the resume device and restores A, whose shell returns from its `echo disk`.
A is then checked as in the kexec-jump flow (proof file, counter, sentinel pages, kernel
log since the jump mark) and its memory compared with a snapshot taken before it
hibernated. In `test_resume` mode the kernel writes the image, reads it back and
restores it at once, with no power cycle.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pexpect

from ..errors import ConsoleEOF, ConsoleTimeout
from ..evidence import PANIC_RE, clean, jump_mark, panic_lines
from ..guest import GuestVM
from ..memory.record import SwsuspImage
from ..verdict import Verdict
from .base import FlowStop
from .common import READY_RE, FlowContext
from ..flow_kinds import FLOW_KINDS

# With no ACPI (pc-virtio) the kernel cannot power off: power_down() halts instead.
POWER_DOWN = r"reboot: (?:Power down|System halted)"
# What the kernel says of the image it wrote and read (kernel/power/swap.c, snapshot.c).
PM_LINE_RE = re.compile(r"PM: .*|hibernation: .*|Swap: .*|swsusp.*", re.IGNORECASE)


HIBERNATE = "echo disk > /sys/power/state"
SWAP_HEADER = 4096  # mkswap's first page: the only block of the swap disk written before the hibernation


def swap_on_command(dev: str) -> str:
    return f"mkswap {dev} && swapon {dev} && cat /proc/swaps"


def mode_command(mode: str) -> str:
    """/sys/power/disk, and the image size the kernel aims at (its default: 2/5 of RAM)."""
    return f"echo {mode} > /sys/power/disk && cat /sys/power/disk /sys/power/image_size"


def make_swap_disk(path: Path, size_mib: int) -> Path:
    """A sparse raw file: what the guest writes to it is what it costs, so its allocated
    size after the hibernation is the size of the image on the swap device."""
    with open(path, "wb") as f:
        f.truncate(size_mib << 20)
    return path


def allocated_bytes(path: Path) -> int:
    return path.stat().st_blocks * 512


def pm_lines(text: str) -> list[str]:
    """The kernel's hibernation messages in a console text."""
    return [line.strip() for line in clean(text).split("\n") if PM_LINE_RE.search(line)]


def failure_lines(text: str) -> list[str]:
    """Why `echo disk` failed: the kernel's last hibernation messages and the shell's error."""
    shell = [line.strip() for line in clean(text).split("\n") if "write error" in line]
    return pm_lines(text)[-12:] + shell


class SwsuspFlow(FlowContext):
    kind = FLOW_KINDS["swsusp"]
    hands_over_resumed_a = True
    summary = "the kernel's own hibernation (swsusp): A -> echo disk > /sys/power/state -> power off -> resume= -> A"
    pass_reason = "kernel A resumed from its swsusp image and every check held"

    def run(self) -> None:
        mode = self.sc.flow.swsusp_mode
        swap = self.swap_disk()
        # resume= on every boot, as a distribution sets it: the first boot finds no image
        # there, and it names the swap device the image is written to.
        with self.vm_a("A", more_append=f"resume={self.swap_dev}", swap_disk=swap) as vm:
            self.boot_a(vm)
            self.swap_on(vm, mode)
            before = self.snapshot(vm, "A-before", "Memory snapshot of A before it hibernates")
            marker = self.hibernate(vm, mode)
            if mode == "test_resume":
                self.finish(vm, before)
                return
        self.measure_image(swap)
        with self.vm_a("A-resumed", more_append=f"resume={self.swap_dev}", swap_disk=swap) as vm:
            self.resume(vm, marker)
            self.finish(vm, before)

    @property
    def swap_dev(self) -> str:
        return self.sc.machine.guest_swap

    def finish(self, vm: GuestVM, before: Path) -> None:
        """A after the resume: its checks, the caller's, its memory against before."""
        self.verify_a(vm, disk=True)
        self.hand_over(vm)
        after = self.snapshot(vm, "A-resumed", "Memory snapshot of A after the resume")
        self.check_memory(before, after)

    def swap_disk(self) -> Path:
        with self.rec.step("swap-disk", f"Host: a sparse {self.sc.flow.swap_mib} MiB swap disk", "-", None):
            path = make_swap_disk(self.run_dir / "swap-disk.img", self.sc.flow.swap_mib)
            self.rec.artifact("swap disk", path)
            self.rec.note("swap disk", f"{path.name} {self.sc.flow.swap_mib} MiB on {self.swap_dev}")
        return path

    def swap_on(self, vm: GuestVM, mode: str) -> None:
        with self.rec.step("swap-on", f"mkswap and swapon {self.swap_dev}; hibernation mode {mode}", "-", vm):
            self.run_ok(vm, swap_on_command(self.swap_dev), verdict=Verdict.CHECK_FAILED)
            self.run_ok(vm, mode_command(mode), verdict=Verdict.CHECK_FAILED)

    def hibernate(self, vm: GuestVM, mode: str) -> str:
        """`echo disk > /sys/power/state` after the jump mark; the marker A's shell prints
        when that write returns (after the resume, or at once if it failed)."""
        title = ("echo disk > /sys/power/state: save A's image to swap, then restore it at once (test_resume)"
                 if mode == "test_resume" else "echo disk > /sys/power/state: save A's image to swap and power off")
        with self.rec.step("hibernate", title, "-", vm):
            self.jumps_out += 1
            self.run_ok(vm, f"echo '{jump_mark(self.jumps_out)}' > /dev/kmsg", verdict=Verdict.CHECK_FAILED)
            marker = vm.console.start(HIBERNATE)
            self.rec.note(HIBERNATE)
            if mode == "test_resume":
                self.returned(vm, marker, "A's shell returning from echo disk (test_resume)", "save")
            else:
                self.wait_power_off(vm, marker)
            self.rec.note("the kernel's hibernation messages", "\n".join(pm_lines(self.text(vm))))
        return marker

    def returned(self, vm: GuestVM, marker: str, what: str, timeout_key: str) -> None:
        status = self.wait_marker(vm, marker, what, timeout_key)
        self.rec.note("(A's shell) echo disk > /sys/power/state returned", vm.console.match_text, status)
        if status != 0:
            raise FlowStop(Verdict.SAVE_FAILED, f"echo disk > /sys/power/state exited {status}",
                           failure_lines(self.text(vm)) or vm.console.last_lines().splitlines())

    def wait_power_off(self, vm: GuestVM, marker: str) -> None:
        """The image written, the kernel powers off: the machine ends (reboot mode; QEMU holds
        it stopped, lab.vm), or the kernel says "Power down" or, with no ACPI to power off, "System halted" and
        halts: QEMU is told to quit, as the power button would."""
        try:
            idx = vm.console.expect([pexpect.EOF, POWER_DOWN, marker, PANIC_RE.pattern], self.timeouts["save"],
                                    "the image written and the power off")
        except ConsoleTimeout as e:
            raise self.console_stop(vm, e) from None
        if idx == 2:  # the write returned: no image
            status = int(re.search(r":(\d+)>", vm.console.match_text).group(1))  # type: ignore[union-attr]
            self.rec.note("(A's shell) echo disk > /sys/power/state returned", vm.console.match_text, status)
            raise FlowStop(Verdict.SAVE_FAILED, f"echo disk > /sys/power/state returned ({status}) without powering off",
                           failure_lines(self.text(vm)))
        if idx == 3:
            raise FlowStop(Verdict.PANIC, "kernel panic while A hibernated", panic_lines(self.text(vm)))
        if idx == 1:
            vm.monitor.cmd("quit")
            self.rec.note("QMP quit (the kernel halted or powered down: " + vm.console.match_text.strip() + ")")
        exit_info = vm.wait_exit(self.timeouts["power-off"])
        if exit_info.triple_fault:
            raise self.console_stop(vm, ConsoleEOF("power-off", vm.console.last_lines())) from None

    def measure_image(self, swap: Path) -> None:
        """Host: the image as the swap disk holds it (the sparse file's allocated blocks)."""
        with self.rec.step("measure-image", "Host: the size of A's image on the swap disk", "-", None):
            on_disk = allocated_bytes(swap)
            self.rec.note("image on the swap disk (allocated blocks)", f"{on_disk} bytes")
            self.rec.memory(replace(self.rec.result.memory, swsusp_image=SwsuspImage(bytes_on_swap=on_disk)))

    def resume(self, vm: GuestVM, marker: str) -> None:
        with self.rec.step("resume", f"Boot the same kernel with resume={self.swap_dev}: A resumes", "-", vm):
            try:
                idx = vm.console.expect([marker, READY_RE.format(role="A"), PANIC_RE.pattern], self.timeouts["boot"],
                                        "A's shell returning from echo disk")
            except (ConsoleTimeout, ConsoleEOF) as e:
                raise self.console_stop(vm, e) from None
            if idx == 1:
                raise FlowStop(Verdict.CHECK_FAILED, "the kernel booted afresh: it did not resume A's image",
                               pm_lines(self.text(vm))[-15:])
            if idx == 2:
                raise FlowStop(Verdict.PANIC, "kernel panic while A resumed", panic_lines(self.text(vm)))
            status = int(re.search(r":(\d+)>", vm.console.match_text).group(1))  # type: ignore[union-attr]
            self.rec.note("(A's shell) echo disk > /sys/power/state returned", vm.console.match_text, status)
            self.rec.note("the kernel's resume messages", "\n".join(pm_lines(self.text(vm))))
            if status != 0:
                raise FlowStop(Verdict.SAVE_FAILED, f"echo disk > /sys/power/state exited {status} after the resume",
                               failure_lines(self.text(vm)))
            self.swap_in_use(vm)

    def swap_in_use(self, vm: GuestVM) -> None:
        """What A keeps in swap besides the image (pages swapped out to make room for it):
        the swap disk's written blocks less these and mkswap's header page are the image."""
        swaps = self.run_ok(vm, "cat /proc/swaps", verdict=Verdict.CHECK_FAILED)
        m = re.search(rf"^{re.escape(self.swap_dev)}\s+\S+\s+\d+\s+(\d+)", swaps, re.MULTILINE)
        image = self.rec.result.memory.swsusp_image
        if m and image is not None:
            used = int(m.group(1)) << 10
            image = replace(image, swap_used_after_resume=used, image_bytes=image.bytes_on_swap - used - SWAP_HEADER)
            self.rec.memory(replace(self.rec.result.memory, swsusp_image=image))
