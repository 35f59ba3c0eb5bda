"""Pure, incremental byte -> frame decoders and frame builders of the supported devices.

No I/O here: drivers and emulators feed bytes in, so each codec is fuzzed and benchmarked
on its own.
"""
