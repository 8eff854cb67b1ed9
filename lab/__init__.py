"""Real servers on loopback (sshd, WordPress stack) shared by the tests, the demo and the benchmarks."""
