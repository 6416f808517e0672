"""Guest physical memory on the host: one module per job.

- ranges: [start, end) address ranges, their algebra and JSON form;
- image: ELF core files (QMP dumps, the saved image) read by physical address;
- diff: two images compared page by page;
- sentinels: the sentinel page format (shared with guests/progs/kj-sentinel.c), finding
  and judging sentinel pages;
- memmap: the report's coarse picture of physical memory;
- checks: the checks of a run (the image against A's memory in B, sentinels, the map);
- roundtrip: the exact proof, departure = in B = on the disk = return;
- record: the findings as a run's record holds them (RunResult.memory) and their JSON;
- kernel_log: a kernel's printk log read from a memory dump (its VMCOREINFO note found
  through System.map, decoded by kexec-tools' vmcore-dmesg).
"""
