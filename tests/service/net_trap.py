"""A trap for outbound network attempts of a child process, native code included.

Two layers, both writing one line per attempt to the file named by ``VOCE_NET_TRAP``:

* an ``LD_PRELOAD`` shim (C, compiled here with the machine's ``cc``) around the libc entry points every
  library ends in: ``getaddrinfo``, ``gethostbyname*``, ``gethostbyaddr*``, ``res_*query``/``res_*search``,
  ``connect``, ``sendto`` and ``sendmsg``.  A Python audit hook cannot see onnxruntime's telemetry, which
  resolves its collector from a C++ thread; the shim does.  A name that is not loopback is refused
  (``EAI_NONAME``) and a non-loopback ``connect``/``sendto`` fails with ``ENETUNREACH``, after the line is
  written, so a failing test leaks nothing either;
* a Python audit hook (``sitecustomize`` on ``PYTHONPATH``) for ``socket.*`` events, which adds the Python stack
  of each attempt, to say where it came from.

:func:`attempts` reads the lines back; :func:`outbound` keeps those that are not loopback.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
from pathlib import Path

SHIM_C = r"""
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static void record(const char *fmt, ...) {
    const char *path = getenv("VOCE_NET_TRAP");
    if (!path) return;
    char line[600];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 2, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if (n > (int)sizeof line - 2) n = sizeof line - 2;
    line[n++] = '\n';
    int saved = errno;
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd >= 0) { ssize_t w = write(fd, line, n); (void)w; close(fd); }
    errno = saved;
}

/* proves the shim is in the process (LD_PRELOAD can be dropped silently, e.g. by a setuid binary) */
__attribute__((constructor)) static void loaded(void) { record("loaded native pid=%d", (int)getpid()); }

static int loopback_name(const char *node) {
    if (node == NULL || *node == 0) return 1;  /* a passive/wildcard lookup: no name to resolve */
    if (!strcmp(node, "localhost") || !strcmp(node, "localhost.") || !strcmp(node, "::1")) return 1;
    if (!strcmp(node, "ip6-localhost") || !strcmp(node, "0.0.0.0") || !strcmp(node, "::")) return 1;
    struct in_addr a4;
    if (inet_pton(AF_INET, node, &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127 || a4.s_addr == 0;
    return 0;
}

/* "inet 1.2.3.4:53" / "inet6 [::1]:80"; returns 1 when the address is loopback (or not an IP socket) */
static int describe(const struct sockaddr *sa, char *out, size_t len) {
    if (sa == NULL) { snprintf(out, len, "(none)"); return 1; }
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        char ip[INET_ADDRSTRLEN] = "?";
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
        snprintf(out, len, "inet %s:%d", ip, ntohs(in->sin_port));
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        char ip[INET6_ADDRSTRLEN] = "?";
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
        snprintf(out, len, "inet6 [%s]:%d", ip, ntohs(in6->sin6_port));
        if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr)) return 1;
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) return in6->sin6_addr.s6_addr[12] == 127;
        return 0;
    }
    if (sa->sa_family == AF_UNIX) {
        snprintf(out, len, "unix %s", ((const struct sockaddr_un *)sa)->sun_path);
        return 1;
    }
    snprintf(out, len, "family %d", sa->sa_family);
    return sa->sa_family == AF_NETLINK;
}

#define REAL(name, ret, ...) \
    static ret (*real_##name)(__VA_ARGS__); \
    if (!real_##name) real_##name = (ret (*)(__VA_ARGS__))dlsym(RTLD_NEXT, #name)

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res) {
    REAL(getaddrinfo, int, const char *, const char *, const struct addrinfo *, struct addrinfo **);
    int local = loopback_name(node);
    record("%s getaddrinfo %s", local ? "loopback" : "OUTBOUND", node ? node : "(null)");
    if (!local) return EAI_NONAME;
    return real_getaddrinfo(node, service, hints, res);
}

#define BY_NAME(fn) \
    record("%s " #fn " %s", loopback_name(name) ? "loopback" : "OUTBOUND", name ? name : "(null)")

struct hostent *gethostbyname(const char *name) {
    REAL(gethostbyname, struct hostent *, const char *);
    BY_NAME(gethostbyname);
    if (!loopback_name(name)) { h_errno = HOST_NOT_FOUND; return NULL; }
    return real_gethostbyname(name);
}

struct hostent *gethostbyname2(const char *name, int af) {
    REAL(gethostbyname2, struct hostent *, const char *, int);
    BY_NAME(gethostbyname2);
    if (!loopback_name(name)) { h_errno = HOST_NOT_FOUND; return NULL; }
    return real_gethostbyname2(name, af);
}

int gethostbyname_r(const char *name, struct hostent *ret, char *buf, size_t len, struct hostent **result, int *err) {
    REAL(gethostbyname_r, int, const char *, struct hostent *, char *, size_t, struct hostent **, int *);
    BY_NAME(gethostbyname_r);
    if (!loopback_name(name)) { *result = NULL; *err = HOST_NOT_FOUND; return ENOENT; }
    return real_gethostbyname_r(name, ret, buf, len, result, err);
}

int gethostbyname2_r(const char *name, int af, struct hostent *ret, char *buf, size_t len, struct hostent **result,
                     int *err) {
    REAL(gethostbyname2_r, int, const char *, int, struct hostent *, char *, size_t, struct hostent **, int *);
    BY_NAME(gethostbyname2_r);
    if (!loopback_name(name)) { *result = NULL; *err = HOST_NOT_FOUND; return ENOENT; }
    return real_gethostbyname2_r(name, af, ret, buf, len, result, err);
}

struct hostent *gethostbyaddr(const void *addr, socklen_t len, int type) {
    (void)addr; (void)len; (void)type;
    record("OUTBOUND gethostbyaddr (reverse lookup)");
    h_errno = HOST_NOT_FOUND;
    return NULL;
}

#define RES(fn) \
    int fn(const char *dname, int class, int type, unsigned char *answer, int anslen) { \
        (void)class; (void)type; (void)answer; (void)anslen; \
        record("OUTBOUND " #fn " %s", dname ? dname : "(null)"); \
        h_errno = HOST_NOT_FOUND; \
        return -1; \
    }
RES(res_query)
RES(res_search)

int connect(int fd, const struct sockaddr *addr, socklen_t len) {
    REAL(connect, int, int, const struct sockaddr *, socklen_t);
    char where[200];
    int local = describe(addr, where, sizeof where);
    if (addr && (addr->sa_family == AF_INET || addr->sa_family == AF_INET6))
        record("%s connect %s", local ? "loopback" : "OUTBOUND", where);
    if (!local) { errno = ENETUNREACH; return -1; }
    return real_connect(fd, addr, len);
}

ssize_t sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *addr, socklen_t len) {
    REAL(sendto, ssize_t, int, const void *, size_t, int, const struct sockaddr *, socklen_t);
    if (addr != NULL) {
        char where[200];
        int local = describe(addr, where, sizeof where);
        if (addr->sa_family == AF_INET || addr->sa_family == AF_INET6)
            record("%s sendto %s", local ? "loopback" : "OUTBOUND", where);
        if (!local) { errno = ENETUNREACH; return -1; }
    }
    return real_sendto(fd, buf, n, flags, addr, len);
}

ssize_t sendmsg(int fd, const struct msghdr *msg, int flags) {
    REAL(sendmsg, ssize_t, int, const struct msghdr *, int);
    if (msg != NULL && msg->msg_name != NULL) {
        char where[200];
        const struct sockaddr *addr = (const struct sockaddr *)msg->msg_name;
        int local = describe(addr, where, sizeof where);
        if (addr->sa_family == AF_INET || addr->sa_family == AF_INET6)
            record("%s sendmsg %s", local ? "loopback" : "OUTBOUND", where);
        if (!local) { errno = ENETUNREACH; return -1; }
    }
    return real_sendmsg(fd, msg, flags);
}
"""

SITECUSTOMIZE = textwrap.dedent(
    '''
    """Installed by tests/service/net_trap.py: every socket.* audit event, with its Python stack."""
    import ipaddress
    import os
    import sys
    import traceback

    _PATH = os.environ.get("VOCE_NET_TRAP")
    _NAMES = {"socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex", "socket.gethostbyaddr"}
    _SENDS = {"socket.connect", "socket.sendto", "socket.sendmsg"}

    def _loopback(host):
        if host is None or host in ("", "localhost", "localhost.", "ip6-localhost"):
            return True
        if isinstance(host, bytes):
            host = host.decode("ascii", "replace")
        try:
            ip = ipaddress.ip_address(str(host).split("%")[0])
        except ValueError:
            return False  # a name that would need resolving
        return ip.is_loopback or ip.is_unspecified

    def _hook(event, args):
        if not _PATH or event not in _NAMES and event not in _SENDS:
            return
        if event in _NAMES:
            target = args[0]
        else:
            address = args[-1]
            if not isinstance(address, tuple):
                return  # a Unix socket path
            target = address[0]
        where = " <- ".join(f"{f.filename}:{f.lineno}" for f in reversed(traceback.extract_stack(limit=12)[:-1]))
        verdict = "loopback" if _loopback(target) else "OUTBOUND"
        with open(_PATH, "a", encoding="utf-8") as f:
            f.write(f"{verdict} python {event} {target!r:.200} at {where}\\n")

    sys.addaudithook(_hook)
    if _PATH:
        with open(_PATH, "a", encoding="utf-8") as f:
            f.write(f"loaded python pid={os.getpid()}\\n")
    '''
)


def build(folder: Path) -> dict[str, str]:
    """Compile the shim and write the audit hook into ``folder``; the environment variables that install both
    (``VOCE_NET_TRAP`` names the record, ``folder/attempts.log``)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise RuntimeError("no C compiler (cc/gcc) to build the network trap")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "net_trap.c").write_text(SHIM_C, encoding="utf-8")
    subprocess.run(
        [cc, "-shared", "-fPIC", "-O1", "-Wall", "-o", str(folder / "net_trap.so"), str(folder / "net_trap.c"), "-ldl"],
        check=True, capture_output=True, text=True,
    )
    hook = folder / "pyhook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
    record = folder / "attempts.log"
    record.write_text("", encoding="utf-8")
    pythonpath = os.pathsep.join(p for p in (str(hook), os.environ.get("PYTHONPATH", "")) if p)
    return {"LD_PRELOAD": str(folder / "net_trap.so"), "PYTHONPATH": pythonpath, "VOCE_NET_TRAP": str(record)}


def attempts(env: dict[str, str]) -> list[str]:
    """Every recorded attempt, loopback ones included."""
    return Path(env["VOCE_NET_TRAP"]).read_text(encoding="utf-8").splitlines()


def loaded(env: dict[str, str], pid: int) -> set[str]:
    """Which layers were installed in process ``pid`` ({"native", "python"} when both)."""
    return {line.split()[1] for line in attempts(env) if line.startswith("loaded ") and line.endswith(f"pid={pid}")}


def outbound(env: dict[str, str]) -> list[str]:
    """The attempts that would have left the machine (to a name or an address that is not loopback)."""
    return [line for line in attempts(env) if line.startswith("OUTBOUND")]
