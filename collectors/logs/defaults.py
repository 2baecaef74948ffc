"""The rule set that ships with the agent: common failures any server logs.

Each rule is (name, pattern, severity). Patterns are Python regular
expressions that also compile for Hyperscan and for `re` on bytes: no
lookarounds, no back-references, no inline flags; case is spelled out with
character classes where it varies. They are matched against each line
anywhere in it (a search, not a full match) and are case-sensitive, so a
capitalised `Exception` matches while HDFS's INFO/WARN chatter
("Got exception while serving") does not.

Severities: critical (the host or a service is losing work now), high (a
crash or hardware/kernel trouble), medium (an error worth a look), low
(often transient).
"""

from __future__ import annotations

__all__ = ["DEFAULT_RULES", "SEVERITIES"]

SEVERITIES = ("critical", "high", "medium", "low")

DEFAULT_RULES: tuple[tuple[str, str, str], ...] = (
    # kernel OOM killer (old kernels: "Kill process", new: "Killed process"),
    # cgroup OOM ("Memory cgroup out of memory: Killed process"), systemd-oomd
    (
        "oom_killer",
        r"[Oo]ut of memory: Kill(?:ed)? process|\boom-kill:|invoked oom-killer"
        r"|systemd-oomd\[\d+\]: Killed ",
        "critical",
    ),
    ("java_out_of_memory", r"java\.lang\.OutOfMemoryError", "critical"),
    (
        "kernel_panic",
        r"Kernel panic - not syncing|kernel BUG at |BUG: unable to handle",
        "critical",
    ),
    ("no_space_left", r"No space left on device|ENOSPC|[Dd]isk quota exceeded", "critical"),
    (
        "database_connection_failed",
        r"[Dd]atabase connection (?:failed|failure|error|refused|lost|timed out)"
        r"|[Dd][Bb] connection (?:failed|failure|error|refused|lost)"
        r"|(?:[Ff]ailed|[Uu]nable) to connect to (?:the )?(?:[Dd]atabase|DB\b|MySQL|MariaDB"
        r"|PostgreSQL|[Pp]ostgres|MongoDB|Redis)"
        r"|[Cc]ould not connect to (?:the )?(?:[Dd]atabase|server|MySQL|PostgreSQL)"
        r"|Can't connect to (?:local )?MySQL server|Lost connection to MySQL server"
        r"|Communications link failure",
        "critical",
    ),
    (
        "segfault",
        r"segfault at |general protection fault|trap invalid opcode",
        "high",
    ),
    ("core_dumped", r"dumped core\b|\(core dumped\)", "high"),
    (
        "disk_io_error",
        r"I/O error|EXT[234]-fs error|XFS \([^)]*\): (?:Corruption|Internal error|metadata I/O)"
        r"|BTRFS (?:error|critical)|critical medium error|Medium Error",
        "high",
    ),
    (
        "kernel_hung_task",
        r"soft lockup - CPU#|blocked for more than \d+ seconds|rcu_sched self-detected stall",
        "high",
    ),
    (
        "memory_allocation_failed",
        r"[Mm]emory allocation failed|[Cc]annot allocate memory|[Ff]ailed to allocate memory"
        r"|[Cc]ould not allocate (?:\d+ bytes of )?memory|page allocation failure|std::bad_alloc",
        "high",
    ),
    ("too_many_open_files", r"Too many open files|VFS: file-max limit \d+ reached", "high"),
    (
        "systemd_service_failed",
        r"Failed to start |Main process exited, code=|Failed with result '"
        r"|Start request repeated too quickly|entered failed state",
        "high",
    ),
    ("apache_critical", r"\[(?:[\w-]*:)?(?:crit|alert|emerg)\]", "high"),
    ("apache_error", r"\[(?:[\w-]*:)?error\]", "medium"),
    # the first line of a Java stack trace ("java.io.IOException: ...",
    # "Exception in thread ...", "... KeeperException ..."), not its "at" lines
    ("java_exception", r"Exception\b|java\.lang\.\w*Error\b", "medium"),
    ("python_traceback", r"^Traceback \(most recent call last\)", "medium"),
    ("connection_refused", r"[Cc]onnection refused|ECONNREFUSED", "medium"),
    (
        "timeout",
        r"[Tt]imeout exceeded|[Tt]imed out|[Dd]eadline exceeded|[Ll]ock wait timeout",
        "low",
    ),
)
