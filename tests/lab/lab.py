"""`Lab`: the one object tests, the CLI and the fixture use.

Reading the plan (env, expected hops) needs no root; up/down/scenario do.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import time
from collections.abc import Iterator

from . import dnsdata, firewall, pathsim, plan, scenarios, servicetags, state
from .nsenter import netns as _netns
from .nsenter import write_sysctls

PREFIX_ENV = "ERPATH_LAB_PREFIX"
_PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{0,7}$")


class LabError(RuntimeError):
    """The lab could not be built or changed (always a failure, never a skip)."""


def default_prefix() -> str:
    return os.environ.get(PREFIX_ENV) or plan.DEFAULT_PREFIX


class Lab:
    def __init__(
        self, prefix: str | None = None, rate_limit: bool = True, ecmp: bool = True
    ) -> None:
        self.prefix = prefix or default_prefix()
        if not _PREFIX_RE.match(self.prefix):
            raise ValueError(
                f"lab prefix {self.prefix!r}: 1-8 lower-case letters/digits, letter first"
            )
        self.rate_limit = rate_limit
        self.ecmp = ecmp
        saved = state.read_state(self.prefix)
        if saved:  # a running lab's options win over constructor defaults
            self.rate_limit = saved.get("rate_limit", rate_limit)
            self.ecmp = saved.get("ecmp", ecmp)
        self.up_seconds: float | None = saved.get("up_seconds")

    # -- naming --------------------------------------------------------------

    @property
    def state_dir(self) -> str:
        return str(state.state_dir(self.prefix))

    def ns(self, node: str) -> str:
        plan.node(node)
        return plan.namespace(self.prefix, node)

    @property
    def current_scenario(self) -> str | None:
        return state.read_state(self.prefix).get("scenario")

    def is_up(self) -> bool:
        st = state.read_state(self.prefix)
        return bool(st.get("scenario")) and set(state.lab_namespaces(self.prefix)) >= {
            self.ns(n) for n in plan.NODE_KEYS
        }

    # -- lifecycle -----------------------------------------------------------

    def up(self, scenario: str = scenarios.DEFAULT_SCENARIO) -> float:
        """Build the lab from scratch (tearing down any previous one); returns seconds."""
        s = scenarios.get(scenario)
        started = time.monotonic()
        self.down()
        d = state.state_dir(self.prefix)
        d.mkdir(parents=True, exist_ok=True)
        state.write_state(self.prefix, lab_prefix=self.prefix, building=True)
        from .build import Wiring  # pyroute2 only where the kernel is touched

        wiring = Wiring(self.prefix)
        try:
            wiring.create_namespaces(self.rate_limit)
            wiring.build_links()
            wiring.build_management()
            loads = {
                self.ns(node): firewall.load(self.ns(node), script)
                for node, script in firewall.rulesets().items()
            }
            self._make_files()
            procs = self._start_processes()
            firewall.wait(loads)
            # Only a firewall that saw the SYN may pass a flow (needs nf_conntrack loaded).
            for fw in plan.STATEFUL_FIREWALLS:
                write_sysctls(self.ns(fw.node), {"net.netfilter.nf_conntrack_tcp_loose": 0})
            wiring.apply_scenario(s, self.ecmp)
            self._set_flaky(s, None)
            state.wait_ready(self.prefix, procs)
        except Exception as exc:
            if os.environ.get("ERPATH_LAB_KEEP_FAILED") != "1":
                state.teardown(self.prefix)
            raise LabError(f"lab {self.prefix!r} failed to build: {exc}") from exc
        finally:
            wiring.close()
        self.up_seconds = round(time.monotonic() - started, 3)
        state.write_state(
            self.prefix,
            building=False,
            scenario=s.name,
            rate_limit=self.rate_limit,
            ecmp=self.ecmp,
            up_seconds=self.up_seconds,
        )
        return self.up_seconds

    def down(self) -> list[str]:
        return state.teardown(self.prefix)

    def _make_files(self) -> None:
        from . import services

        d = state.state_dir(self.prefix)
        (d / "tls").mkdir(exist_ok=True)
        services.make_certificate(str(d / "tls" / "cert.pem"), str(d / "tls" / "key.pem"))
        servicetags.write(str(d / "ServiceTags_Public_lab.json"))
        (d / "dns-bad.mode").write_text("normal\n")

    def _start_processes(self) -> dict[str, subprocess.Popen]:
        d = state.state_dir(self.prefix)
        tls = ["--cert", str(d / "tls" / "cert.pem"), "--key", str(d / "tls" / "key.pem")]
        return {
            "svc-tls": state.spawn(
                self.prefix,
                "svc-tls",
                self.ns("svc"),
                "tests.lab.services",
                [*tls, "--host", "svc"],
            ),
            "cdn-tls": state.spawn(
                self.prefix,
                "cdn-tls",
                self.ns("cdn"),
                "tests.lab.services",
                [*tls, "--host", "cdn"],
            ),
            "extcdn-tls": state.spawn(
                self.prefix,
                "extcdn-tls",
                self.ns("extcdn"),
                "tests.lab.services",
                [*tls, "--host", "extcdn"],
            ),
            "dns": state.spawn(
                self.prefix,
                "dns",
                self.ns("dns"),
                "tests.lab.dnsserver",
                [
                    "--serve",
                    f"public={plan.DNS_PUBLIC}",
                    "--serve",
                    f"bad={plan.DNS_BAD}",
                    "--serve",
                    f"public={plan.DNS_PUBLIC6}",
                    "--serve",
                    f"bad={plan.DNS_BAD6}",
                    "--mode-file",
                    str(d / "dns-bad.mode"),
                ],
            ),
            "dcdns": state.spawn(
                self.prefix,
                "dcdns",
                self.ns("dcdns"),
                "tests.lab.dnsserver",
                ["--serve", f"split={plan.DNS_SPLIT}", "--serve", f"split={plan.DNS_SPLIT6}"],
            ),
        }

    def _require_up(self) -> None:
        if not self.is_up():
            raise LabError(f"lab {self.prefix!r} is not up (run: python -m tests.lab up)")

    def _wiring(self):
        from .build import Wiring

        w = Wiring(self.prefix)
        w.attach()
        return w

    def scenario(self, name: str) -> None:
        """Switch the running lab to scenario `name` (live: links, routes, rules)."""
        s = scenarios.get(name)
        self._require_up()
        before = self.current_scenario
        w = self._wiring()
        try:
            w.apply_scenario(s, self.ecmp)
        finally:
            w.close()
        self._set_flaky(s, scenarios.get(before) if before in scenarios.SCENARIOS else None)
        state.write_state(self.prefix, scenario=s.name)

    def _set_flaky(self, s: scenarios.Scenario, before: scenarios.Scenario | None) -> None:
        """Routers that turn flaky or steady with this switch (nft, only where it changes)."""
        was = set(before.flaky) if before else set()
        for node in sorted(was ^ set(s.flaky)):
            firewall.set_flaky(self.ns(node), node in s.flaky)

    def time_exceeded_dropped(self, node: str) -> int:
        """Time-exceeded messages a flaky router chose not to send so far."""
        return firewall.counter(
            self.ns(node), "dropped_time_exceeded", family="ip", table=firewall.FLAKY_TABLE
        )

    def set_ecmp(self, enabled: bool) -> None:
        self._require_up()
        self.ecmp = enabled
        w = self._wiring()
        try:
            w.reconcile_routes(scenarios.get(self.current_scenario), enabled)
        finally:
            w.close()
        state.write_state(self.prefix, ecmp=enabled)

    def set_rate_limit(self, enabled: bool) -> None:
        from .build import RATE_LIMIT_OFF, RATE_LIMIT_ON

        self._require_up()
        self.rate_limit = enabled
        for n in plan.NODE_KEYS:
            write_sysctls(self.ns(n), RATE_LIMIT_ON if enabled else RATE_LIMIT_OFF)
        state.write_state(self.prefix, rate_limit=enabled)

    @contextlib.contextmanager
    def options(self, *, rate_limit: bool | None = None, ecmp: bool | None = None) -> Iterator[Lab]:
        """Temporarily change rate limiting / ECMP; restored on exit."""
        before = (self.rate_limit, self.ecmp)
        try:
            if rate_limit is not None and rate_limit != before[0]:
                self.set_rate_limit(rate_limit)
            if ecmp is not None and ecmp != before[1]:
                self.set_ecmp(ecmp)
            yield self
        finally:
            if self.rate_limit != before[0]:
                self.set_rate_limit(before[0])
            if self.ecmp != before[1]:
                self.set_ecmp(before[1])

    def set_dns_mode(self, mode: str) -> None:
        """Make the misbehaving resolver misbehave for every name (see dnsdata.MODES)."""
        if mode not in dnsdata.MODES:
            raise ValueError(
                f"unknown DNS mode {mode!r}; choose one of: {', '.join(dnsdata.MODES)}"
            )
        path = state.state_dir(self.prefix) / "dns-bad.mode"
        path.write_text(mode + "\n")
        # mtime granularity: make sure the server sees a change even within one tick.
        os.utime(path, ns=(time.time_ns(), time.time_ns()))

    # -- running things inside ----------------------------------------------

    def run(self, node: str, argv: list[str], **kw) -> subprocess.CompletedProcess:
        """Run a command inside a node's namespace (capture text output by default)."""
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("check", False)
        return subprocess.run(["ip", "netns", "exec", self.ns(node), *argv], **kw)

    def netns(self, node: str):
        """`with lab.netns("branch"): socket.create_connection(...)` (this thread only)."""
        return _netns(self.ns(node))

    def firewall_drops(self) -> int:
        """Packets the datacenter firewall dropped in its forward chain so far."""
        return firewall.counter(self.ns(plan.FIREWALL.node), "dropped_forward")

    def status(self) -> dict:
        st = state.read_state(self.prefix)
        present = state.lab_namespaces(self.prefix)
        expected = [self.ns(n) for n in plan.NODE_KEYS]
        return {
            "prefix": self.prefix,
            "up": self.is_up(),
            "scenario": st.get("scenario"),
            "rate_limit": st.get("rate_limit"),
            "ecmp": st.get("ecmp"),
            "up_seconds": st.get("up_seconds"),
            "building": st.get("building", False),
            "namespaces_present": len(present),
            "namespaces_missing": sorted(set(expected) - set(present)),
            "processes": state.alive(self.prefix),
            "state_dir": self.state_dir,
        }

    # -- the truth -----------------------------------------------------------

    def _scenario_name(self, scenario: str | None) -> str:
        return scenario or self.current_scenario or scenarios.DEFAULT_SCENARIO

    def traces(self, scenario: str | None, src_node: str, dst_address: str) -> list[pathsim.Trace]:
        return pathsim.traces(self._scenario_name(scenario), src_node, dst_address, ecmp=self.ecmp)

    def expected_hop_sets(
        self, scenario: str | None, src_node: str, dst_address: str
    ) -> list[frozenset[str]]:
        """Per TTL, every address that may answer (ECMP members); empty = no answer."""
        return pathsim.expected_hop_sets(
            self._scenario_name(scenario), src_node, dst_address, ecmp=self.ecmp
        )

    def expected_hops(
        self,
        scenario: str | None,
        src_node: str,
        dst_address: str,
        *,
        sport: int | None = None,
        dport: int = 443,
        proto: str = "tcp",
    ) -> list[str | None]:
        """Hop address per TTL as `traceroute -n` sees it from src_node (None: no answer).

        Where the path forks over ECMP, pass the probe flow's `sport` (e.g.
        `traceroute -T --sport N`): the running kernel is asked which member
        that flow hashes to.  Without it, an ECMP fork raises AmbiguousPath.
        """
        choose = None
        if sport is not None and self.ecmp:

            def choose(node, prev, src, via):
                return (self._ecmp_member(node, prev, src, dst_address, proto, sport, dport),)

        return pathsim.expected_hops(
            self._scenario_name(scenario), src_node, dst_address, ecmp=self.ecmp, choose=choose
        )

    def _ecmp_member(
        self, node: str, prev: str, src: str, dst: str, proto: str, sport: int, dport: int
    ) -> str:
        # pyroute2 cannot send RTA_SPORT/RTA_DPORT; iproute2's `ip route get` can,
        # and the kernel then hashes the flow exactly as it hashes the probes.
        iif = plan.link_between(node, prev).ifname(node)
        out = self.run(
            node,
            [
                "ip",
                "-o",
                "route",
                "get",
                dst,
                "from",
                src,
                "iif",
                iif,
                "ipproto",
                proto,
                "sport",
                str(sport),
                "dport",
                str(dport),
            ],
        ).stdout
        words = out.split()
        gateway = words[words.index("via") + 1] if "via" in words else None
        owner = plan.owner_of(gateway) if gateway else None
        if owner is None:
            raise pathsim.AmbiguousPath(f"kernel in {node} gave no ECMP next hop for {dst}")
        return owner

    # -- what tests and users need -------------------------------------------

    def env(self) -> dict:
        from .envinfo import describe

        return describe(self)
