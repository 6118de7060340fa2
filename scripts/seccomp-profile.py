#!/usr/bin/python3
"""The namespace runtime's default seccomp profile, compiled to BPF with libseccomp.

Usage: seccomp-profile.py OUT.bpf

A deny list in the spirit of the container runtimes' default profiles: everything is
allowed except the calls below, which fail with EPERM (clone3 with ENOSYS, so that libc
falls back to clone, whose flags a filter can inspect). Calls of another architecture
(e.g. 32-bit int 0x80 on x86_64) kill the process: their numbers would dodge the list.
docs/sandboxes.md lists the same calls; keep the two in step.
"""
import errno
import sys

import seccomp

CLONE_NEWUSER = 0x10000000
TIOCSTI = 0x5412
TIOCLINUX = 0x541C

DENIED = [
    # kernel extension and introspection
    "bpf", "perf_event_open", "kexec_load", "kexec_file_load",
    "init_module", "finit_module", "delete_module", "create_module",
    "get_kernel_syms", "query_module", "lookup_dcookie", "syslog",
    "_sysctl", "sysfs", "uselib", "nfsservctl",
    # kernel keyrings
    "keyctl", "add_key", "request_key",
    # mounting and file systems
    "mount", "umount", "umount2", "pivot_root", "move_mount", "open_tree",
    "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr", "quotactl", "quotactl_fd",
    # other namespaces (setns of any kind; unshare/clone only with CLONE_NEWUSER, below)
    "setns",
    # other processes' memory
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp",
    # memory tricks used by kernel exploits
    "userfaultfd",
    # file handles bypass path-based access checks
    "open_by_handle_at",
    # machine state
    "reboot", "swapon", "swapoff", "acct", "settimeofday", "stime", "clock_settime",
    "clock_adjtime", "adjtimex", "vhangup", "iopl", "ioperm",
    # io_uring performs system calls the filter never sees
    "io_uring_setup", "io_uring_enter", "io_uring_register",
]


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: seccomp-profile.py OUT.bpf")
    flt = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    deny = seccomp.ERRNO(errno.EPERM)
    for name in DENIED:
        try:
            flt.add_rule(deny, name)
        except (RuntimeError, ValueError, OSError):
            pass  # not a system call of this architecture
    new_user = seccomp.Arg(0, seccomp.MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER)
    flt.add_rule(deny, "unshare", new_user)
    flt.add_rule(deny, "clone", new_user)
    flt.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    # Typing into the controlling terminal of whoever started the sandbox.
    for request in (TIOCSTI, TIOCLINUX):
        flt.add_rule(deny, "ioctl", seccomp.Arg(1, seccomp.MASKED_EQ, 0xFFFFFFFF, request))
    with open(sys.argv[1], "wb") as out:
        flt.export_bpf(out)


if __name__ == "__main__":
    main()
