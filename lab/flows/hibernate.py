"""The ten steps of seed 004 (kexec jump hibernation), driven for real.

A boots; loads B with --load-preserve-context; jumps (kexec -e); B saves A's memory
from /proc/vmcore to the hibernation disk and powers off (reboot -f ends the machine);
a new QEMU boots C on the same disk; C loads the image with --entry=the jump-back
entry; kexec -e jumps back into A, whose shell returns from its own `kexec -e`.
"""

from __future__ import annotations

import logging
import re
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..expectation import LATER_EVIDENCE
from .. import kexec_commands as commands
from ..evidence import kexec_load_entry
from ..image_tools import (
    corrupt_image_on_disk, crc32_file, read_from_disk, split_image_on_disk, tamper_image_on_disk,
)
from ..memory.checks import check_image
from ..memory.image import PhysImage
from ..memory.ranges import format_range, subtract_ranges
from ..memory.low_memory import (
    LOW_END, LowMemoryLayout, LowPage, changed_low_pages, ebda_start, owners_summary, parse_e820, real_mode_area,
    reserved_low, a_ram_map,
)
from ..memory.record import LowMemoryRecord
from ..memory.resumed import ResumedProof, prove_resumed
from ..memory.roundtrip import DEPARTURE_IN_B, RoundTripProof, compare, prove_round_trip
from ..guest import GuestVM
from ..verdict import Verdict
from .base import FlowStop, read_log
from .common import FlowContext
from ..flow_kinds import FLOW_KINDS

log = logging.getLogger(__name__)


class HibernateFlow(FlowContext):
    kind = FLOW_KINDS["hibernate"]
    hands_over_resumed_a = True
    summary = "the ten steps of seed 004: A -> B saves A's image -> power off -> C loads it -> A resumes"
    proof: Future[RoundTripProof] | None = None  # the round-trip proof, computed from the return on
    resumed_proof: Future[ResumedProof] | None = None  # every page of A when it runs again
    a_real_mode_header: int | None = None  # A's real_mode_header, read while A ran
    host_work: ThreadPoolExecutor  # the host's checks that run beside a guest
    def run(self) -> None:
        with self.vm_a() as vm:
            self.boot_a(vm)
            if self.sc.flow.save == "makedumpfile":
                self.save_vmcoreinfo(vm)
            self.load_b(vm, then=lambda: self.read_real_mode_header(vm))
            self.a_marker, departure = self.jump_to_b_captured(vm)
            in_b = self.snapshot(vm, "B-booted", "Memory snapshot in kernel B (A's memory as B saves it)")
            self.save_image_b(vm)
            self.power_off(vm)
        if self.sc.flow.split_image_segments:
            self.split_image()
        if self.sc.flow.corrupt_image_pages:
            self.corrupt_image()
        saved = self.run_dir / "image-as-saved.elf"  # the host's copy, to name pages that change later
        self.read_image(saved)
        if self.sc.flow.tamper_image_at:
            self.tamper_image()
        image_problem: FlowStop | None = None
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="kjlab-proof") as self.host_work:
            try:
                with self.vm("C-A", "console=ttyS0 loglevel=7 kjlab.role=C", self.art.initrd_c,
                             memory_mib=self.sc.c_memory_mib) as vm:
                    image_problem = self.check_image(saved, in_b, departure)  # on the host, while C boots
                    self.boot_c(vm)
                    self.load_image(vm, saved)
                    ret = self.jump_back(vm, departure, in_b, saved)
                    self.verify_a(vm)
                    self.hand_over(vm)
                self.check_round_trip(departure, ret)
            except FlowStop as later:
                if image_problem is None:
                    raise self.with_memory_at_return(later, departure) from None
                # The damaged image is the cause; what the resume then did is more evidence.
                raise FlowStop(image_problem.verdict, image_problem.reason,
                               [*image_problem.evidence, f"{LATER_EVIDENCE}{self.rec.result.steps[-1].name}: "
                                f"{later.verdict}: {later.reason} --", *later.evidence]) from None
        if image_problem is not None:
            raise image_problem
        saved.unlink(missing_ok=True)

    def read_image(self, saved: Path) -> None:
        """Host: a copy of the image as B saved it, and the CRC-32 C verifies before it loads it."""
        with self.rec.step("read-image", "Host: copy the saved image off the disk and take its CRC-32", "-", None):
            read_from_disk(self.art.disk, "dump.elf", saved)
            self.image_crc32 = crc32_file(saved)
            self.rec.note("CRC-32 of dump.elf as saved", f"{self.image_crc32:#010x}")

    def check_image(self, saved: Path, b_snapshot: Path, departure: Path | None) -> FlowStop | None:
        """Host: the saved image against A's memory in B and A's sentinel pages (lab.memory.checks)."""
        with self.rec.step("check-image", "Host: the saved image against A's memory and its sentinel pages", "-", None):
            finding = check_image(saved, b_snapshot, departure or b_snapshot, self.plan, self.sc.flow.b_window,
                                  self.highmem)
            self.rec.memory(replace(self.rec.result.memory, image_check=finding.record,
                                    image_bad_ranges=tuple(finding.bad_ranges)))
            self.rec.note("image check", "\n".join(finding.problems) or "every page and every sentinel page held")
            short = self.highmem_short(finding.record.sentinels_in_highmem)
            if finding.problems:
                return self.failed_going_on("the image is damaged; the resume goes on to show what it does",
                                            FlowStop(Verdict.CORRUPT_IMAGE, "the saved image does not hold A's memory",
                                                     finding.problems))
            if short is not None:
                return self.failed_going_on("the run does not test high memory; the resume goes on", short)
        return None

    def failed_going_on(self, message: str, stop: FlowStop) -> FlowStop:
        """The current step failed, and the flow goes on to gather more evidence: `stop` is
        the verdict it will end with."""
        step = self.rec.current
        assert step is not None
        step.outcome, step.message = "failed", message
        return stop

    def highmem_short(self, counts: dict[str, Any] | None) -> FlowStop | None:
        """flow.highmem_sentinels: A must have had that many sentinel pages in its HighMem
        zone at the jump, or the run proved nothing of high memory (CHECK_FAILED)."""
        want = self.sc.flow.highmem_sentinels
        if counts is not None:
            self.rec.note("sentinel pages in A's HighMem zone at the jump",
                          f"{counts['zone']}: tmpfs {counts['tmpfs']}, anon {counts['anon']} of {counts['of']}")
        if not want:
            return None
        have = int(counts["tmpfs"]) + int(counts["anon"]) if counts is not None else 0
        if have >= want:
            return None
        where = (f"A's HighMem zone {counts['zone']}" if counts is not None
                 else "A's HighMem zone (A's boot log reported none)")
        return FlowStop(Verdict.CHECK_FAILED, f"{have} of A's sentinel pages lay in {where} at the jump, "
                        f"flow.highmem_sentinels asks for {want}: this run does not test high memory",
                        [f"sentinel pages in {where}: {have}", f"flow.highmem_sentinels = {want}"])

    def tamper_image(self) -> None:
        at = self.sc.flow.tamper_image_at
        with self.rec.step("tamper-image", f"Host: flip one byte of the saved image at {at:#x} (test option)", "-", None):
            offset = tamper_image_on_disk(self.art.disk, "dump.elf", at, self.run_dir)
            self.rec.note(f"flipped the byte at physical {at:#x} (file offset {offset:#x}) of dump.elf")

    def verify_image_in_c(self, vm: GuestVM, saved: Path) -> None:
        """C checks the image before it loads it against the CRC-32 the host took after B
        saved it (kj-proof crc32). A checksum for accidental change, at TCG speed: busybox's
        md5sum took 2.05 s of each cycle for 92 MB. The proof of every page at the return
        (check-round-trip) does not rest on it."""
        out = self.run_ok(vm, "kj-proof crc32 /mnt/dump.elf", verdict=Verdict.CHECK_FAILED)
        found = re.search(r"crc32 0x([0-9a-f]{8})\b", out)
        if found and int(found.group(1), 16) == self.image_crc32:
            return
        evidence = [f"CRC-32 in C: {'0x' + found.group(1) if found else out.strip()}",
                    f"CRC-32 as saved: {self.image_crc32:#010x}"]
        now = read_from_disk(self.art.disk, "dump.elf", self.run_dir / "image-on-disk-now.elf")
        self.rec.artifact("image as saved", saved)
        self.rec.artifact("image on the disk at load", now)
        with PhysImage.open(saved) as was, PhysImage.open(now) as is_:
            leg = compare("as saved = on the disk at load", was, is_, was.file_backed_ranges(), self.symbols)
        evidence += [leg.summary(), *(e.line() for e in leg.examples)]
        raise FlowStop(Verdict.CORRUPT_IMAGE, "the image on the disk changed after B saved it", evidence)

    def corrupt_image(self) -> None:
        n = self.sc.flow.corrupt_image_pages
        with self.rec.step("corrupt-image", f"Host: damage {n} sentinel pages of the saved image (test option)", "-", None):
            hit = corrupt_image_on_disk(self.art.disk, "dump.elf", self.plan.token, n, self.run_dir)
            self.rec.note(f"flipped a word in {len(hit)} sentinel pages", ", ".join(f"0x{p:x}" for p in hit[:20]))

    def save_vmcoreinfo(self, vm: GuestVM) -> None:
        """makedumpfile in B needs A's VMCOREINFO, which the vmcore of a preserve-context
        load lacks (facts: makedumpfile): A puts it on the disk before the jump."""
        with self.rec.step("vmcoreinfo-A", "Save A's VMCOREINFO to the disk for makedumpfile", "-", vm):
            self.run_ok(vm, f"kj-mount-disk {self.disk_dev}", verdict=Verdict.CHECK_FAILED)
            try:
                self.run_ok(vm, "kj-vmcoreinfo > /mnt/vmcoreinfo && head -n 2 /mnt/vmcoreinfo", verdict=Verdict.CHECK_FAILED)
            finally:  # A must not keep the disk mounted across the jump: B writes it
                self.run_ok(vm, "umount /mnt", verdict=Verdict.CHECK_FAILED)

    def split_image(self) -> None:
        n = self.sc.flow.split_image_segments
        with self.rec.step("split-image", f"Host: rewrite the saved image into {n} PT_LOAD segments (test option)", "-", None):
            detail = split_image_on_disk(self.art.disk, "dump.elf", n, self.run_dir)
            self.rec.note(f"split dump.elf into {n} PT_LOADs", detail)

    def boot_c(self, vm: GuestVM) -> None:
        with self.rec.step("boot-C", "Boot kernel C on the same disk", "8", vm):
            self.wait_ready(vm, "C")

    def load_image(self, vm: GuestVM, saved: Path) -> None:
        with self.rec.step("load-image", "Check A's image, then kexec -l --args-none --entry=<jump-back entry>", "9", vm):
            self.run_ok(vm, f"kj-mount-disk {self.disk_dev} && ls -l /mnt && cat /mnt/kexec_jump_back_entry",
                        verdict=Verdict.CHECK_FAILED)
            self.verify_image_in_c(vm, saved)
            output: list[str] = []
            self.with_iomem_filter(vm, lambda: output.append(self.run_ok(
                vm, commands.load_image(self.quirks), "load")))
            self.return_entry = kexec_load_entry("".join(output))
            self.run_ok(vm, "umount /mnt", verdict=Verdict.CHECK_FAILED)

    def jump_back(self, vm: GuestVM, departure: Path | None, in_b: Path, saved: Path) -> Path | None:
        """kexec -e in C; the guest stops at A's jump-back entry for the return snapshot.
        The host starts proving the round trip at once, while A resumes and checks itself."""
        with self.rec.step("jump-back", "kexec -e in C: jump back to kernel A", "10", vm), self.interrupt_logging(vm):
            _, ret = self.jump_capturing(vm, self.return_entry, "A-return", lambda: self._send_kexec_e(vm),
                                         then_a_runs=True)
            self.return_snapshot = ret
            self.proof = self.host_work.submit(prove_round_trip, departure, in_b, saved, ret, self.sc.flow.b_window,
                                               self.sc.a_ram_ranges, self.symbols)
            if departure is not None and ret is not None and self.a_running is not None and self.symbols is not None:
                with PhysImage.open(saved) as img:
                    zero_filled = img.zero_fill_ranges()
                a_ram, not_a_ram = a_ram_map(read_log(self.a_console_log) if self.a_console_log else "",
                                             self.sc.a_ram_ranges)
                if not_a_ram:
                    self.rec.note("A's RAM for the last leg (A's own memory map: usable ranges below mem=)",
                                  "not A's RAM, left out: " + ", ".join(format_range(r) for r in not_a_ram))
                self.resumed_proof = self.host_work.submit(
                    prove_resumed, departure, ret, self.a_running, a_ram,
                    self.low_memory_layout(departure), self.symbols, zero_filled)
            self.jump_returned(vm, self.a_marker, "A")
        return ret

    def read_real_mode_header(self, vm: GuestVM) -> None:
        """Where A's real-mode area is (lab.memory.low_memory), read while A still runs."""
        self.a_real_mode_header = self.read_a_pointer(vm, "real_mode_header")

    def read_a_pointer(self, vm: GuestVM, name: str) -> int | None:
        """A pointer variable of A's, read while A runs (QMP `xp` on its physical address):
        once A has jumped, the page may lie in B's window, swapped out."""
        phys = self.symbols.physical_of(name) if self.symbols else None
        if phys is None:
            return None
        size = self.sc.kernel.arch.info.elf_class // 8
        out = vm.monitor.hmp(f"xp /1x{'w' if size == 4 else 'g'} {phys:#x}")
        self.rec.note(f"QMP human-monitor-command: xp {phys:#x} ({name}, read while A runs)", out.strip())
        found = re.search(r":\s*0x([0-9a-f]+)", out)
        return int(found.group(1), 16) if found else None

    def low_memory_layout(self, departure: Path) -> LowMemoryLayout:
        """A's low 1 MiB as A's boot log, symbols and memory describe it."""
        boot_log = read_log(self.a_console_log) if self.a_console_log else ""
        area = (real_mode_area(self.a_real_mode_header, self.symbols)
                if self.symbols and self.a_real_mode_header is not None else None)
        with PhysImage.open(departure) as dep:
            ebda = ebda_start(dep)
        reserved, why = reserved_low(self.art.release_a, self.a_cmdline)
        return LowMemoryLayout(parse_e820(boot_log), area, ebda, reserved, why, self.sc.machine.smp, self.a_cmdline)

    def low_memory_at_return(self, departure: Path, ret: Path) -> list[LowPage]:
        """The low 1 MiB at departure against the return (A never ran again): each changed
        page named by its owner in A, recorded."""
        layout = self.low_memory_layout(departure)
        with PhysImage.open(departure) as dep, PhysImage.open(ret) as back:
            pages = changed_low_pages(dep, back, layout)
        self.rec.memory(replace(self.rec.result.memory, low_memory_at_return=LowMemoryRecord(
            pages_compared=LOW_END // 4096, changed=tuple(p.line() for p in pages),
            owners=tuple(p.owner.name for p in pages), used_after_resume=sum(p.owner.used_after_resume for p in pages))))
        return pages

    def with_memory_at_return(self, stop: FlowStop, departure: Path | None) -> FlowStop:
        """A resume that failed after the return was captured: was A's memory intact when
        A got control back? What was compared is said, and the low 1 MiB (which the image
        does not hold) is compared too, each changed page named by its owner in A."""
        if self.return_snapshot is None or departure is None or self.proof is None:
            return stop
        if self.failed_step_name() == "check-round-trip":  # the proof itself failed: it said all it knows
            return stop
        low = self.low_memory_at_return(departure, self.return_snapshot)
        used = [p for p in low if p.owner.used_after_resume]
        if self.resumed_proof is not None:  # A ran again before it failed: its every-page leg is evidence too
            self.rec.memory(replace(self.rec.result.memory, resumed=self.resumed_proof.result().record()))
        low_said = (f"the low 1 MiB: {len(low)} of 256 pages changed ({owners_summary(low)})"
                    + (f", {len(used)} of them A's own memory in use: " + "; ".join(p.line() for p in used[:6])
                       if used else "") if low else "the low 1 MiB: unchanged")
        try:
            self.check_round_trip(departure, self.return_snapshot, resumed=False)
            domain = self.proof.result().pages_in_domain
            said = (f"the {domain} pages of A the image holds were intact at return; {low_said}"
                    + ("" if used else ": the failure is in A's own resume path"))
        except FlowStop as proof:
            if proof.verdict is Verdict.CORRUPT_IMAGE:  # A got back another memory than B saved: the cause
                return FlowStop(proof.verdict, proof.reason, [*proof.evidence, f"{LATER_EVIDENCE}"
                                f"{self.failed_step_name()}: {stop.verdict}: {stop.reason} --", *stop.evidence])
            said = f"{proof.reason}: {'; '.join(proof.evidence[:3])}; {low_said}"
        return FlowStop(stop.verdict, stop.reason, [*stop.evidence, f"{LATER_EVIDENCE}check-round-trip: {said} --",
                                                    *(p.line() for p in low[:40])])

    def failed_step_name(self) -> str:
        failed = [s.name for s in self.rec.result.steps if s.outcome == "failed"]
        return failed[-1] if failed else self.rec.result.steps[-1].name

    def _send_kexec_e(self, vm: GuestVM) -> str:
        vm.console.send_line("kexec -x -e")
        self.rec.note("kexec -x -e")
        return ""

    def check_round_trip(self, departure: Path | None, ret: Path | None, resumed: bool = True) -> None:
        """Host: every page of A at departure = in B = on the disk = at return (computed
        since the return, lab.memory.roundtrip; the step's time is what is left to wait);
        then (resumed) every page of A's RAM when A runs again (lab.memory.resumed)."""
        with self.rec.step("check-round-trip", "Host: every page of A at departure, in B, on the disk and at return", "-",
                           None):
            assert self.proof is not None, "jump_back starts the proof"
            proof = self.proof.result()
            self.rec.memory(replace(self.rec.result.memory, round_trip=proof.record()))
            if departure is not None and ret is not None:
                failed = [r for leg in proof.failed_legs for r in leg.differing]
                self.memory_map(departure, ret, proven=subtract_ranges(proof.domain, failed))
            self.rec.note("round-trip proof", "\n".join([leg.summary() for leg in proof.legs] + proof.missing))
            if not proof.complete:
                raise FlowStop(Verdict.CHECK_FAILED, "the round trip was not proven: " + "; ".join(proof.missing),
                               [leg.summary() for leg in proof.legs])
            for leg in proof.failed_legs:
                verdict = Verdict.CHECK_FAILED if leg.name == DEPARTURE_IN_B else Verdict.CORRUPT_IMAGE
                raise FlowStop(verdict, f"A's memory is not the same {leg.name.replace(' = ', ' and ')}",
                               [leg.summary(), *(e.line() for e in leg.examples)])
            if resumed:
                self.check_a_running()

    def check_a_running(self) -> None:
        """The last leg: A when it runs again against A at departure, every page of its RAM."""
        if self.resumed_proof is None:
            why = ("no System.map of A" if self.symbols is None else
                   "the guest never stopped where A runs again" if self.a_running is None else "no snapshot to compare")
            raise FlowStop(Verdict.CHECK_FAILED, f"the round trip was not proven: A running again was not captured ({why})")
        leg = self.resumed_proof.result()
        record = leg.record()
        self.rec.memory(replace(self.rec.result.memory, resumed=record))
        self.rec.note("A running again", "\n".join([record.summary, *record.low_memory.changed,
                                                    *(f"page {w.address:#x}: {w.what}" for w in record.own_writes)]))
        if leg.missing:
            raise FlowStop(Verdict.CHECK_FAILED, "the round trip was not proven: " + "; ".join(leg.missing))
        if leg.swap_problems or leg.lost:
            raise FlowStop(Verdict.CORRUPT_IMAGE, "A's memory when it ran again is not what it was at departure",
                           list(leg.problems))
        if leg.low_used:
            owners = owners_summary(leg.low_used)
            raise FlowStop(Verdict.CORRUPT_IMAGE, f"A's low memory changed where A uses it after the resume ({owners})",
                           [p.line() for p in leg.low_used])
