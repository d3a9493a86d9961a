"""The soak: the benchmark's fleet for a long run with discovery faults, instance-list changes
and operator restarts, checked for endpoint loss and sampled for memory, descriptors and writes.

`python -m soak --minutes 30 --services 1000` (`make soak SOAK_ARGS=...`). Pure parts: plan
(the seeded chaos), book (what the emulator answered, when), checker (endpoint loss), trend
(least squares) and summary; the rest drives processes like the benchmark does.
"""
