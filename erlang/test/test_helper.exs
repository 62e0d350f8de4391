# The interop tests need:
#   ERLNODE_BIN    path of the built `erlnode` binary
#   ERL_EPMD_PORT  a free port, set when this VM starts: OTP reads it only at
#                  boot, so it cannot be set from inside the tests. Every
#                  erlnode started by the tests serves its embedded EPMD there.
# `make test` sets both.
Erlnode.TestSupport.check_environment!()
# `:stress` tests (test/migration_stress_test.exs) are opt-in: --only stress
ExUnit.start(timeout: 120_000, exclude: [:stress])
