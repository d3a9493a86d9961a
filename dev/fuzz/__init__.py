"""Coverage-guided fuzzing of the discovery decoding paths and the spec parser (dev only).

    python -m fuzz.run --target pai_eas --seconds 60
    python -m fuzz.run --target all --seconds 60

targets.py holds the target functions; the unit tier replays tests/fuzz-corpus/ through
them without a fuzzer (tests/unit/test_fuzz_regressions.py).
"""
