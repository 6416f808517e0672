"""Seed 004's "make a snapshot, jump back, do something, make another snapshot".

A writes a marker, B saves image 1 and jumps back; A writes a second marker, jumps
into B again (B resumes where it left off), B saves image 2 and jumps back. The host
then reads both images off the disk: image 1 holds marker 1 only, image 2 both.
"""

from __future__ import annotations

import mmap
from pathlib import Path

from ..image_tools import read_from_disk
from ..results import Check
from ..guest import GuestVM
from ..verdict import Verdict
from .base import FlowStop
from .common import FlowContext
from ..flow_kinds import FLOW_KINDS


class SnapshotDebugFlow(FlowContext):
    kind = FLOW_KINDS["snapshot-debug"]
    summary = "seed 004: two images of one A saved at two moments, both checked on the host"
    pass_reason = "both images show A at their own moment, and A came back after each"

    def markers(self) -> tuple[str, str]:
        token = self.rec.result.run_id.encode().hex()[-12:]
        return f"KJMOMENT1-{token}", f"KJMOMENT2-{token}"

    def run(self) -> None:
        m1, m2 = self.markers()
        with self.vm_a() as vm:
            self.boot_a(vm)
            self.moment(vm, 1, m1)
            self.load_b(vm)
            a_marker = self.jump_to_b(vm, step="jump-to-B-1")
            entry = self.save_image_b(vm, "snap1.elf", step="save-image-1")
            b_marker = self.b_jump_back(vm, entry, a_marker, step="jump-back-1")
            self.moment(vm, 2, m2)
            with self.rec.step("jump-to-B-2", "kexec -e in A resumes B where it left off", "6", vm):
                a_marker = self.a_jump_out(vm)
                self.jump_returned(vm, b_marker, "B")
            self.save_image_b(vm, "snap2.elf", step="save-image-2")
            self.b_jump_back(vm, entry, a_marker, step="jump-back-2")
            self.verify_a(vm, disk=True)
        self.check_images(m1, m2)

    def moment(self, vm: GuestVM, n: int, marker: str) -> None:
        with self.rec.step(f"moment-{n}", f"A does something: writes marker {n} into a tmpfs file", "-", vm):
            self.run_ok(vm, f"for i in 1 2 3 4 5 6 7 8; do echo {marker}; done > /tmp/moment{n}", verdict=Verdict.CHECK_FAILED)

    def check_images(self, m1: str, m2: str) -> None:
        with self.rec.step("check-images", "Host: each image holds A's memory at its own moment", "-", None):
            found = {}
            for name in ("snap1.elf", "snap2.elf"):
                local = read_from_disk(self.art.disk, name, self.run_dir / name)
                self.rec.artifact(f"image {name}", local)
                found[name] = (_contains(local, m1.encode()), _contains(local, m2.encode()))
            checks = [
                Check("image-1-has-moment-1", found["snap1.elf"][0], f"{m1} in snap1.elf: {found['snap1.elf'][0]}"),
                Check("image-1-lacks-moment-2", not found["snap1.elf"][1], f"{m2} in snap1.elf: {found['snap1.elf'][1]}"),
                Check("image-2-has-both", all(found["snap2.elf"]), f"markers in snap2.elf: {found['snap2.elf']}"),
            ]
            self.rec.checks(checks)
            bad = [c for c in checks if not c.ok]
            if bad:
                raise FlowStop(Verdict.CHECK_FAILED, "the images do not show A at their moments", [c.detail for c in bad])


def _contains(path: Path, needle: bytes) -> bool:
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        return m.find(needle) >= 0
