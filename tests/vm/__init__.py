"""A cgroup v2 virtual machine for the tests: see cgroup2_vm.py and docs/cgroup2-vm.md."""
