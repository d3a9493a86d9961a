"""Local development environment: tool binaries, a real control plane and CoreDNS."""
