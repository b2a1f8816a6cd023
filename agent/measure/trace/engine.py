"""The traceroute engine: every target, every TTL in flight, shared hops asked once.

How one `run` proceeds:

1. Distance estimate.  One probe per trace with TTL = max_ttl; the
   destination's reply TTL gives its hop distance (nearest initial TTL minus
   reply TTL, plus one).  It costs no router a time-exceeded.
2. Head.  Per flow, the trace with the longest estimate probes every TTL at
   once, like traceroute -N with no wait (one probe per TTL, up to
   probes_per_hop while unanswered).
3. Tails: Doubletree (Donnet et al., SIGMETRICS 2005).  Every other trace
   probes its estimated destination TTL, then walks backwards one TTL at a
   time until it meets a (TTL, router) that a higher-ranked trace already
   knows, whose hops below it are known: those are copied instead of asked
   again (IPv6, which has no Record Route: also a destination in the same
   /64 at the same distance, see `_same_link`) (the local stop set; a trace further down the same branch is waited
   for, so each branch is walked once).  A wrong estimate just moves the
   walk: forward while routers answer, down while the destination does.
4. Pacing.  Routers answer about six questions at once and then one per
   second (see `agent.measure.trace.pacing`).  A question whose answering
   router can be predicted from another trace (same next or previous hop,
   same first hop from one source address, or same destination distance for
   a penultimate hop) is sent one probe at a time against that router's
   modelled budget and retried after a refill.  The distance alone is a
   guess (another path of the same length ends there too: IPv6 has no
   Record Route to tell): a guessed router's silence within its modelled
   tokens drains nothing, or one silent hop on another path would hold that
   router to one question a second.  Questions no router can be
   predicted for draw on a bucket per TTL of the same size, so a burst from
   many traces cannot drain the router that answers them all; every hop
   sends one probe first and the rest only if it went unanswered; traces
   that know least are served first, round-robin, deepest question first.
5. Traces whose destination never answers (a blackhole: the answer is lost
   on an asymmetric return) walk forward; a stop-set hit (two routers in a
   row that a higher-ranked trace also met) copies everything below it, and
   a TTL that went silent in a burst is asked again once its router is
   known, so none comes back empty because routers ran out of tokens.
   Where the walk meets only silence past its last router, that silence is
   one router and one budget (a router with no route answers unreachable at
   every TTL past its own, and spends its tokens twice as fast): the first
   silent TTL is asked once more after that router's rest (`_rest`), and an
   unreachable ends the walk.  A distance probe answered unreachable names
   that router and its TTL, so nothing past it is asked.
6. MSEE flows (`agent.measure.trace.msee`): at the TTL where a reply came
   from inside a circuit's peering subnet, each target is asked with more
   flow identifiers until a second link shows or six flows showed one.

Waiting is traceroute's -w MAX,HERE,NEAR: a probe is given up after MAX, or
HERE x the RTT of a reply from its own hop, or NEAR x that of a later hop.
The clock, sockets, source address and port reservations come through
`agent.measure.trace.io.Io`, so tests drive the engine on a fake network.
What is known per trace lives in `state`, the MSEE flows in `msee`, the
records built at the end in `record`; this module plans and runs the loop.
Flows (Paris traceroute): each flow has its own source port (ICMP: id), all
else in the 5-tuple fixed, so per-flow load balancers keep every probe of a
flow on one path; several flows enumerate ECMP paths and are merged per hop.
"""

from __future__ import annotations

import ipaddress
import math
import random
import socket
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from agent.measure import packets, rawsock
from agent.measure.packets import return_hops
from agent.measure.trace.io import REAL, Io, Ports, Sockets
from agent.measure.trace.matching import Match, ProbeTable, SentProbe
from agent.measure.trace.msee import MSEE_FLOWS, MseeProber
from agent.measure.trace.pacing import UNREACHABLE_COST, RouterBudget, TokenBucket
from agent.measure.trace.record import trace_record
from agent.measure.trace.state import HopState, Out, TraceState, routers_of
from agent.report import Trace

if TYPE_CHECKING:
    from agent.measure.trace import TraceOptions, TraceRequest


@dataclass(slots=True)
class Engine:
    traces: list[TraceState]
    opts: TraceOptions
    socks: Sockets
    table: ProbeTable
    budget: RouterBudget
    pps: TokenBucket
    t0: float
    now: Callable[[], float]
    # Questions no known router can be predicted to answer are paced per TTL,
    # as if one router answered each TTL: until a reply names the routers, a
    # burst of them from many traces would only drain one router's tokens.
    unknown: RouterBudget = field(default_factory=lambda: RouterBudget(6, 1.0))
    msee: MseeProber | None = None
    est_queue: list[TraceState] = field(default_factory=list)  # distance probes not yet sent
    est_out: dict[int, tuple[TraceState, Out]] = field(default_factory=dict)
    out: dict[int, tuple[TraceState, HopState, Out]] = field(default_factory=dict)
    estimating: bool = True
    est_rtt_s: float = 0.0
    # IPv6 tails that asked the last router of a /64 themselves, per router,
    # and how many it can answer without a wait
    link_questions: dict[str, int] = field(default_factory=dict)
    link_allowance: dict[str, float] = field(default_factory=dict)
    link_asking: set[int] = field(default_factory=set)  # the traces that ask it
    # Per last router before a silence: the hop whose question, after the
    # rest, decides whether the other traces past that router ask again.
    rest_leaders: dict[str, HopState] = field(default_factory=dict)

    # ------------------------------------------------------------------ loop

    def loop(self) -> None:
        deadline = self.t0 + self.opts.timeout_s
        traced_s: float | None = None
        self.est_queue = [t for t in reversed(self.traces) if t.template is not None]
        while True:
            self._receive(0.0)
            now = self.now()
            self._expire(now)
            wake = deadline
            if self.estimating:
                wake = min(wake, self._send_estimates(now))
            if self.estimating and not self.est_out and not self.est_queue:
                self._choose_heads()
            if not self.estimating:
                self._plan_all(now)
                wake = min(wake, self._send_due(now))
            if traced_s is None and all(t.finished for t in self.traces):
                traced_s = now
            if self.msee is not None and not self.estimating:
                # MSEE flows wait for the MSEE routers' tokens at most
                # msee_wait_s past the traces' end: a bounded extra.
                self.msee.plan(self)
                if traced_s is None or now < traced_s + self.opts.msee_wait_s:
                    wake = min(wake, self.msee.send_due(self, now))
                    msee_done = self.msee.done()
                else:
                    msee_done = not self.msee.out
            else:
                msee_done = True
            if (traced_s is not None and msee_done) or now >= deadline:
                return
            pending = [o.deadline_s for _, o in self.est_out.values()]
            pending += [o.deadline_s for _, _, o in self.out.values()]
            if self.msee is not None:
                pending += [o.deadline_s for _, _, o in self.msee.out.values()]
                if traced_s is not None:
                    wake = min(wake, traced_s + self.opts.msee_wait_s)
            wake = min([wake, *pending])
            self._receive(max(wake - self.now(), 0.0))

    # ------------------------------------------------------------------ estimates

    def _send_estimates(self, now: float) -> float:
        """Send the distance probes the pps cap allows; when to look again."""
        while self.est_queue:
            wait = self.pps.wait_s(now)
            if wait > 0:
                return now + wait
            t = self.est_queue.pop()
            tpl = t.rr_template or t.template
            assert tpl is not None
            self.pps.take(now)
            o = self._send(t, self.opts.max_ttl, -1, frozenset(), now, tpl)
            if o is not None:
                self.est_out[o.probe.index] = (t, o)
            now = self.now()
        return float("inf")

    def _estimate_reply(self, t: TraceState, m: Match) -> None:
        self.est_out.pop(m.probe.index, None)
        if m.from_destination:
            t.rr = m.record_route
            hops = return_hops(m.reply_ttl) + 1
            t.est = min(max(hops, self.opts.first_ttl), self.opts.max_ttl)
            self.est_rtt_s = max(self.est_rtt_s, m.rtt_s)
            cap = max(self.opts.wait_min_s, self.opts.wait_near * self.est_rtt_s)
            for _, o in self.est_out.values():
                o.deadline_s = min(o.deadline_s, o.probe.sent_s + cap)
        elif m.kind == "unreachable":
            # A router with no route answers at every TTL past its own: the
            # path ends at it, about as far out as its answer came back from.
            hops = return_hops(m.reply_ttl) + 1
            t.blocker = m.address
            t.blocker_ttl = min(max(hops, self.opts.first_ttl), self.opts.max_ttl)
            now = self.now()
            self.budget.answered(m.address, frozenset(), now)
            self.budget.reserve(frozenset({m.address}), now, UNREACHABLE_COST - 1)
        t.est_done = True

    def _choose_heads(self) -> None:
        self.estimating = False
        for t in self.traces:
            t.est_done = True
        groups = sorted({t.group for t in self.traces})
        for group in groups:
            members = [t for t in self.traces if t.group == group and not t.finished]
            if not members:
                continue
            head = max(members, key=lambda t: (t.est or 0, -t.number))
            head.head = True
            order = [head] + [t for t in members if t is not head]
            for rank, t in enumerate(order):
                t.rank = rank

    # ------------------------------------------------------------------ planning

    def _plan_all(self, now: float) -> None:
        """Plan every trace, again while one trace's progress unblocks another."""
        ordered = sorted(self.traces, key=lambda t: (t.group, t.rank))
        while True:
            before = [(len(t.hops), t.finished, t.copy_from is None) for t in ordered]
            for t in ordered:
                if not t.finished:
                    self._plan(t, now)
            if before == [(len(t.hops), t.finished, t.copy_from is None) for t in ordered]:
                return

    def _plan(self, t: TraceState, now: float) -> None:
        o = self.opts
        tail = o.doubletree and not t.head and t.est is not None
        lo = t.est if tail else o.first_ttl
        end = t.end_ttl()
        # forward: ask up to the destination, or gap_limit TTLs past the last router
        hi_router = max((x for x, h in t.hops.items() if x >= lo and h.routers), default=lo - 1)
        upper = max(hi_router + o.gap_limit, t.est or lo + o.gap_limit - 1)
        capped = False
        if end is None and t.blocker_ttl is not None:
            # Past the router that says unreachable there is only that router
            # again: ask up to it (or one past the last router), not beyond.
            cap = max(t.blocker_ttl, hi_router + 1)
            capped = upper >= cap
            upper = min(upper, cap)
        upper = min(upper, o.max_ttl, end if end is not None else o.max_ttl)
        for ttl in range(lo, upper + 1):
            if ttl not in t.hops:
                t.hops[ttl] = HopState(ttl)
        if not tail and not t.head and o.doubletree:
            self._stop_forward(t)
        self._retry_silent(t, end)
        needed = range(lo, (end if end is not None else upper) + 1)
        t.forward_done = all(t.hops[x].settled for x in needed) and (
            end is not None or upper >= o.max_ttl or hi_router + o.gap_limit <= upper or capped
        )
        if t.forward_done and end is None and t.est is None and self._rest(t, hi_router, now):
            t.forward_done = False
        if not tail:
            t.backward_done = True
        else:
            self._walk_back(t)
        if t.forward_done and t.backward_done:
            t.finished = True
            t.finished_s = now
            for h in t.hops.values():  # probes past the end are of no use now
                for idx in list(h.outstanding):
                    self.out.pop(idx, None)
                h.outstanding.clear()
                # Nothing more is asked here: a hop still waiting for a
                # retry (see _retry_silent) stays as it was answered, so
                # the traces waiting on this one's hop go on.
                h.settled = True

    def _stop_forward(self, t: TraceState) -> None:
        """Doubletree for a trace that walks forward (its destination never answered).

        Its deepest own answer that a higher-ranked trace of the flow also got
        at that TTL, from a trace whose hops below are known, is a stop-set
        hit: everything below it is copied, not asked again -- when the
        Record Route its time-exceeded quotes shows the same routers below,
        or else two routers in a row match: one shared router alone can be
        where per-destination ECMP paths meet again.
        """
        first = self.opts.first_ttl
        floor = t.copy_from[1] if t.copy_from is not None else first
        for ttl in sorted(t.hops, reverse=True):
            if ttl <= floor:
                return
            h = t.hops[ttl]
            if not h.routers:
                continue
            below = t.hops.get(ttl - 1)
            for other in self.traces:
                if other is t or other.group != t.group or other.rank > t.rank or other.failure:
                    continue
                common = self._rr_common(t, other)
                if common is not None and common < ttl - 1:
                    continue
                known, known_below = other.resolved(ttl), other.resolved(ttl - 1)
                # Same routers below: Record Route says so, or two routers in a row.
                proven = common is not None or bool(
                    below is not None
                    and known_below
                    and below.routers & routers_of(known_below, other.address)
                )
                shared = proven and known and h.routers & routers_of(known, other.address)
                if shared and other.covers_below(ttl, first):
                    t.copy_from = (other, ttl)
                    return

    def _rest(self, t: TraceState, hi_router: int, now: float) -> bool:
        """Ask the first silent TTL past the last router once more, after a rest; True: asking.

        A router that ran out of ICMP tokens is as silent as one that never
        answers, and a router with no route to the destination spends its
        tokens fastest (every TTL past its own asks it, each answer charged
        twice: see `pacing`).  Those TTLs are one router and one budget, so
        the question waits until that router has rested, then the walk ends
        at its answer (unreachable: the end of the path) or at its silence.
        Per last router, one trace asks first; the others past the same
        router ask only if it answered, one rest apart.
        """
        h = t.hops.get(hi_router + 1)
        last = t.hops.get(hi_router)
        if h is None or last is None or not last.routers or h.replies or t.copied(h.ttl):
            return False
        if h.rested:
            return not h.settled
        key = f"past:{min(last.routers)}"
        leader = self.rest_leaders.get(key)
        if leader is not None:
            if not leader.settled:
                return True  # wait for its answer
            if not leader.replies:
                return False  # that router stayed silent after its rest: no use asking
        else:
            self.rest_leaders[key] = h
            # Its rest started with the last question that reached it.
            since = max((x.last_sent_s for x in t.hops.values() if x.ttl > hi_router), default=now)
            self.budget.silent(frozenset({key}), min(since, now))
        h.rested, h.settled, h.paced, h.retried = True, False, True, True
        h.predicted, h.cost = frozenset({key}), UNREACHABLE_COST
        h.sent = self.opts.probes_per_hop - 1  # one question: silence again ends the walk
        return True

    def _retry_silent(self, t: TraceState, end: int | None) -> None:
        """Ask a silent TTL again, one probe at a time, when its router has become predictable.

        A burst from many traces at once can drain a router's ICMP tokens, so
        silence then is no proof of a silent router; once another trace names
        the router, the question waits for that router's refill instead.
        """
        for ttl, h in t.hops.items():
            if (
                not h.settled
                or h.replies
                or h.retried
                or h.paced
                or (end is not None and ttl >= end)
                or t.copied(ttl)
            ):
                continue
            predicted, guessed = self._predict(t, ttl)
            if predicted:
                h.retried, h.settled, h.paced = True, False, True
                h.predicted, h.guessed, h.sent = predicted, guessed, 0

    def _walk_back(self, t: TraceState) -> None:
        o = self.opts
        if t.backward_done:
            return
        b = min(t.hops)
        hb = t.hops[b]
        if not hb.settled:
            return
        if b <= o.first_ttl:
            t.backward_done = True
            return
        same, covered = self._same_routers_below(t, b)
        if same is not None:
            if covered:
                t.copy_from = (same, b)
                t.backward_done = True
            return  # otherwise wait until that trace knows its hops below b
        if hb.routers:
            for other in self.traces:
                if other is t or other.group != t.group or other.rank > t.rank:
                    continue
                if other.failure is not None:
                    continue
                common = self._rr_common(t, other)
                if common is not None and common < b - 1:
                    continue  # Record Route shows the paths differ below b (ECMP)
                known = other.resolved(b)
                if known is None or not (hb.routers & routers_of(known, other.address)):
                    continue
                if other.covers_below(b, o.first_ttl):
                    t.copy_from = (other, b)  # stop set hit: the rest is known
                    t.backward_done = True
                    return
                return  # a trace ahead of us is walking this branch: wait for it
        elif hb.dest:
            if t.family == 6:
                on_link = self._same_link(t, b)
                if on_link is not None:
                    if not on_link.covers_below(b, o.first_ttl):
                        return  # wait until that trace knows its hops below b
                    if t.number not in self.link_asking:
                        if not self._last_router_has_tokens(on_link, b):
                            t.copy_from = (on_link, b)
                            t.backward_done = True
                            return
                        self.link_asking.add(t.number)
            # Penultimate hop: if a trace ahead of us at the same distance is
            # asking it right now, wait and learn which router to pace against.
            for other in self.traces:
                if other is t or other.group != t.group or other.rank > t.rank:
                    continue
                if other.dest_ttl() == b:
                    h = other.hops.get(b - 1)
                    if h is not None and not h.settled:
                        return
        t.hops[b - 1] = HopState(b - 1)

    def _last_router_has_tokens(self, on_link: TraceState, b: int) -> bool:
        """Whether the router before `on_link`'s destination can answer one more target now.

        Counts the targets sent to it this way against the tokens it had when
        the first one was, so a burst of tails asks at most what the bucket
        holds and nobody waits for a refill.
        """
        replies = on_link.resolved(b - 1)
        routers = frozenset(routers_of(replies, on_link.address)) if replies else frozenset()
        if not routers:
            return False  # a silent last router: asking again shows nothing new
        now = self.now()
        for r in routers:
            if r not in self.link_allowance:
                # Its tokens now, no credit: a question lost to the router's
                # limit would cost a wait and a paced retry (seconds), while
                # a copy costs nothing.
                self.link_allowance[r] = math.floor(self.budget.tokens(r, now))
        if any(self.link_questions.get(r, 0) >= self.link_allowance[r] for r in routers):
            return False
        for r in routers:
            self.link_questions[r] = self.link_questions.get(r, 0) + 1
        return True

    def _same_link(self, t: TraceState, b: int) -> TraceState | None:
        """A higher-ranked IPv6 trace to a destination in the same /64, at the same distance.

        IPv6 has no Record Route to prove that two targets share the routers
        below them, and asking each target's penultimate hop costs that
        router a token per target (one per second after a burst of 6): 30
        services behind one router would take half a minute.  A /64 is one
        link, so a destination in the same /64 at the same distance sits
        behind the same last router.  While that router has tokens, a target
        asks it anyway (its answering address may show which ECMP branch
        the target's path took); once they are spent, the hops below are
        copied from the trace on the same link (marked shared), as
        Doubletree's stop set would have copied them at that router.
        """
        for other in self.traces:
            if other is t or other.group != t.group or other.rank > t.rank or other.failure:
                continue
            if other.dest_ttl() == b and self._one_link(t, other):
                return other
        return None

    def _same_routers_below(self, t: TraceState, b: int) -> tuple[TraceState | None, bool]:
        """A higher-ranked trace through the very same routers at TTLs 1..b-1, by Record Route.

        Entry i of the option is the outgoing address of the router at TTL i,
        so equal entries 1..b-1 (from the same source address) mean the same
        routers joined by the same links: the same hops, with nothing asked.
        Returns (that trace or None, whether its hops below b are known).
        """
        found = None
        for other in self.traces:
            if other is t or other.group != t.group or other.rank > t.rank or other.failure:
                continue
            common = self._rr_common(t, other)
            if common is None:
                continue
            d = other.dest_ttl()
            if d is not None:
                common = min(common, d - 1)  # entries past its destination are no routers
            if common >= b - 1:
                if other.covers_below(b, self.opts.first_ttl):
                    return other, True
                found = other
        return found, False

    @staticmethod
    def _rr_common(t: TraceState, other: TraceState) -> int | None:
        """How many leading Record Route entries two traces share; None if unknown."""
        if not t.rr or not other.rr or t.template is None or other.template is None:
            return None
        if t.template.source != other.template.source:
            return 0
        common = 0
        for mine, theirs in zip(t.rr, other.rr, strict=False):
            if mine != theirs:
                break
            common += 1
        return common

    def _predict(self, t: TraceState, ttl: int) -> tuple[frozenset[str], frozenset[str]]:
        """Routers likely to answer (t, ttl), from what other traces learned; and the guessed ones.

        A router is guessed when the only reason is that both destinations
        answer at ttl + 1 and nothing shows the paths below alike (no Record
        Route in common, no shared hop below, IPv6 not the same /64): another
        path of the same length ends there just as well.  Its silence then
        says nothing of that router's tokens (see `_expire`).
        """
        mine_next = t.hops.get(ttl + 1)
        mine_prev = t.resolved(ttl - 1)
        prev_routers = routers_of(mine_prev, t.address) if mine_prev else set()
        out: set[str] = set()
        guessed: set[str] = set()
        for other in self.traces:
            if other is t or other.family != t.family:
                continue
            h = other.hops.get(ttl)
            if h is None or not h.routers:
                continue
            if ttl == 1 and t.template and other.template:
                if t.template.source == other.template.source:
                    out |= h.routers  # from one source address, the first hop is the gateway
                continue
            common = self._rr_common(t, other)
            theirs_prev = other.resolved(ttl - 1)
            if (common is not None and common < ttl - 1) or (
                prev_routers
                and theirs_prev
                and not prev_routers & routers_of(theirs_prev, other.address)
            ):
                # The paths differ below this TTL: the other trace's router
                # says nothing about ours.  (A wrong prediction paced a silent
                # hop against a busy Microsoft router: 2 s per trace run.)
                continue
            nxt = other.hops.get(ttl + 1)
            if mine_next is not None and nxt is not None and mine_next.routers & nxt.routers:
                out |= h.routers
                continue
            if mine_next is not None and nxt is not None and mine_next.dest and nxt.dest:
                alike = (
                    common is not None
                    or bool(prev_routers and theirs_prev)
                    or (t.family == 6 and self._one_link(t, other))
                )
                (out if alike else guessed).update(h.routers)
                continue
            if prev_routers:
                theirs = other.resolved(ttl - 1)
                if theirs and prev_routers & routers_of(theirs, other.address):
                    out |= h.routers
        return frozenset(out | guessed), frozenset(guessed - out)

    @staticmethod
    def _one_link(t: TraceState, other: TraceState) -> bool:
        """Whether two IPv6 destinations share a /64: one link, behind one last router."""
        mine = ipaddress.ip_network(f"{t.address}/64", strict=False)
        return ipaddress.ip_address(other.address) in mine

    # ------------------------------------------------------------------ sending

    def _send_due(self, now: float) -> float:
        """Send every probe that is due and allowed; return when to look again.

        Round-robin, one probe per trace per pass; traces that know least go
        first, each with its deepest question: when routers' tokens are
        scarce, every trace gets an answer to stand on (and a deep one lets
        Doubletree copy everything below it).
        """
        wake = float("inf")
        live = [t for t in self.traces if not t.finished]
        answered = {t.number: any(h.replies for h in t.hops.values()) for t in live}
        queues = {t.number: self._due(t) for t in live}
        active = sorted(live, key=lambda t: (answered[t.number], t.rank))
        while active:
            again = []
            for t in active:
                queue = queues[t.number]
                while queue and not t.finished:
                    h = queue[0]
                    wait = self._ask(t, h, now)
                    if wait > 0:
                        wake = min(wake, now + wait)
                        queue.pop(0)  # blocked: try its next question
                        continue
                    if self._want(h) == 0:
                        queue.pop(0)
                    if queue:
                        again.append(t)
                    break
                now = self.now()
            active = again
        for t in live:
            for h in t.hops.values():
                self._maybe_settle(h)
        return wake

    def _due(self, t: TraceState) -> list[HopState]:
        """The trace's hops with a question to ask, deepest first."""
        due = []
        for ttl in sorted(t.hops, reverse=True):
            h = t.hops[ttl]
            if h.settled:
                continue
            if t.copied(ttl):  # another trace's answer stands in: no need to ask
                self._drop_outstanding(h)
                h.settled = True
                continue
            if h.paced is None:
                h.predicted, h.guessed = self._predict(t, ttl)
                if not h.predicted and t.blocker and t.blocker_ttl and ttl >= t.blocker_ttl:
                    # the router that said unreachable to the distance probe
                    h.predicted, h.cost = frozenset({t.blocker}), UNREACHABLE_COST
                h.paced = bool(h.predicted)
            if self._want(h) > 0:
                due.append(h)
        return due

    def _want(self, h: HopState) -> int:
        """Probes hop `h` may send now: one first, the rest only if that one went unanswered.

        Every probe a router answers costs it a token, and one answer names
        the hop (a Paris flow keeps one path); a predicted router's hop asks
        one at a time, an unpredictable one sends the rest together.
        """
        n = self.opts.probes_per_hop
        if h.replies or h.outstanding or h.sent >= n:
            return 0
        return 1 if h.paced or h.sent == 0 else n - h.sent

    def _ask(self, t: TraceState, h: HopState, now: float) -> float:
        """Send one probe for hop `h` if the budgets allow; else how long until they do."""
        # A question no router can be predicted for draws on the TTL's own
        # bucket -- unless the destination is expected to answer it.
        unknown = (
            frozenset()
            if h.predicted or (t.est is not None and h.ttl >= t.est)
            # ICMPv6 has its own budget: an IPv6 question's key has a ":" (see pacing)
            else frozenset({f"v6:{h.ttl}" if t.family == 6 else str(h.ttl)})
        )
        wait = max(
            self.pps.wait_s(now),
            self.budget.wait_s(h.predicted, now, credit=True, cost=h.cost),
            self.unknown.wait_s(unknown, now),
        )
        if wait > 0:
            return wait
        # A guessed router asked on credit (past its modelled tokens) is
        # expected to be silent if it is rate limited: that silence counts.
        guessed = frozenset(r for r in h.guessed if self.budget.tokens(r, now) >= h.cost)
        self.pps.take(now)
        self.budget.reserve(h.predicted, now, h.cost)
        self.unknown.reserve(unknown, now)
        out = self._send(t, h.ttl, h.sent, h.predicted, now)
        h.sent += 1
        h.last_sent_s = now
        if out is not None:
            out.unknown, out.cost, out.guessed = unknown, h.cost, guessed
            out.deadline_s = min(out.deadline_s, out.probe.sent_s + self._wait_cap(t, h.ttl))
            h.outstanding[out.probe.index] = out
            self.out[out.probe.index] = (t, h, out)
        return 0.0

    def _send(
        self,
        t: TraceState,
        ttl: int,
        attempt: int,
        reserved: frozenset[str],
        now: float,
        tpl: packets.Template | None = None,
    ) -> Out | None:
        if tpl is None:
            # A trace whose destination never answered asks with Record Route:
            # the time-exceeded quotes the routers before the one answering,
            # which proves where its path joins another trace's.
            forward = t.est is None and not self.estimating and t.rr_template is not None
            tpl = t.rr_template if forward else t.template
        assert tpl is not None
        try:
            return self.emit(tpl, t.number, ttl, attempt, reserved)
        except rawsock.SendError as err:
            t.failure = "trace.unreachable" if err.code == "tcp.unreachable" else "trace.error"
            t.finished, t.finished_s = True, now
            return None

    def emit(
        self, tpl: packets.Template, trace: int, ttl: int, attempt: int, reserved: frozenset[str]
    ) -> Out:
        """Send one probe of `tpl` with `ttl`; raises rawsock.SendError if the stack refuses."""
        index, seq = self.table.next_identity()
        if tpl.protocol == packets.PROTO_ICMP:
            seq = index
        sent_s = self.socks.send(packets.stamp(tpl, ttl, index, seq), tpl.destination)
        probe = SentProbe(
            index,
            trace,
            ttl,
            attempt,
            tpl.source,
            tpl.destination,
            tpl.protocol,
            tpl.sport,
            tpl.dport,
            seq,
            tpl.icmp_ident,
            sent_s,
        )
        self.table.add(probe)
        return Out(probe, sent_s + self.opts.wait_max_s, reserved)

    def _wait_cap(self, t: TraceState, ttl: int) -> float:
        """traceroute -w HERE/NEAR from replies already in: this hop's, or a later one's.

        A question after a rest (see `_rest`) asks one router past the last
        that answered: NEAR x that router's RTT.
        """
        o = self.opts
        cap = o.wait_max_s
        h, last = t.hops.get(ttl), t.hops.get(ttl - 1)
        if h is not None and h.rested and last is not None and last.replies:
            rtt = min(r.rtt_s for r in last.replies)
            cap = max(o.wait_min_s, o.wait_near * rtt)
        for other in t.hops.values():
            if other.ttl < ttl or not other.replies:
                continue
            factor = o.wait_here if other.ttl == ttl else o.wait_near
            rtt = min(r.rtt_s for r in other.replies)
            cap = min(cap, max(o.wait_min_s, factor * rtt))
        return cap

    def _drop_outstanding(self, h: HopState) -> None:
        for idx in list(h.outstanding):
            self.out.pop(idx, None)
        h.outstanding.clear()

    def _maybe_settle(self, h: HopState) -> None:
        if h.settled or h.outstanding:
            return
        if h.sent >= self.opts.probes_per_hop or h.replies:
            h.settled = True

    # ------------------------------------------------------------------ receiving

    def _receive(self, timeout_s: float) -> None:
        for rx in self.socks.receive(timeout_s):
            if rx.protocol == packets.PROTO_TCP:
                decoded = packets.decode_tcp(rx.data)
            else:
                decoded = packets.decode_icmp(rx.data)
            if decoded is None:
                continue
            m = self.table.match(decoded, rx.at_s)
            if m is not None:
                self._record(m)

    def _record(self, m: Match) -> None:
        idx = m.probe.index
        if idx in self.est_out:
            t, _ = self.est_out[idx]
            self._estimate_reply(t, m)
            return
        if self.msee is not None and idx in self.msee.out:
            self.msee.reply(self, m)
            return
        if m.probe.trace < 0:
            return  # an MSEE flow's reply after its wait ran out
        t = self.traces[m.probe.trace]
        h = t.hops.get(m.probe.ttl)
        if t.finished or h is None or m.probe.attempt < 0:
            return
        entry = self.out.pop(idx, None)
        out = h.outstanding.pop(idx, None)
        reserved = out.reserved if out else (entry[2].reserved if entry else frozenset())
        sent = out or (entry[2] if entry else None)
        if sent is not None and sent.unknown:
            # Answered: the router is known now and its own budget is charged
            # below; the TTL's bucket only bounds questions still in the dark.
            self.unknown.give(sent.unknown, self.now())
        h.replies.append(m.reply())
        if m.from_destination:
            h.dest = True
        else:
            h.routers.add(m.address)
            now = self.now()
            # A question after a rest keeps its reservation: the router that
            # answered spent what the next trace past it must wait for.
            rest = sent is not None and sent.cost > 1 and m.address not in reserved
            self.budget.answered(m.address, frozenset() if rest else reserved, now)
            if m.kind == "unreachable" and m.address not in reserved:
                self.budget.reserve(frozenset({m.address}), now, UNREACHABLE_COST - 1)
            if t.est is None and len(m.record_route) > len(t.rr):
                t.rr = m.record_route  # the routers before this one, from the quote
            if m.kind == "unreachable":
                h.blocked = True
        # traceroute -w HERE/NEAR: a reply shortens the wait of this hop and
        # of every earlier hop of the same trace.
        o = self.opts
        for other in t.hops.values():
            if other.ttl > m.probe.ttl:
                continue
            factor = o.wait_here if other.ttl == m.probe.ttl else o.wait_near
            cap = max(o.wait_min_s, factor * m.rtt_s)
            for pending in other.outstanding.values():
                pending.deadline_s = min(pending.deadline_s, pending.probe.sent_s + cap)
        self._maybe_settle(h)

    def _expire(self, now: float) -> None:
        if self.msee is not None:
            self.msee.expire(self, now)
        for idx, (t, o) in list(self.est_out.items()):
            if o.deadline_s <= now:
                del self.est_out[idx]
                t.est_done = True
        for idx, (_, h, o) in list(self.out.items()):
            if o.deadline_s <= now:
                del self.out[idx]
                h.outstanding.pop(idx, None)
                if o.reserved:
                    # A router guessed from the distance alone may be on
                    # another path: its silence drains nothing, it gets its
                    # token back, and the hop asks on without it.
                    self.budget.silent(o.reserved - o.guessed, now)
                    self.budget.give(o.reserved & o.guessed, now)
                    h.predicted -= o.guessed
                    h.guessed -= o.guessed
                # Unanswered: a silent router costs no token, a drained one is
                # retried against its own budget once it is known.
                self.unknown.give(o.unknown, now)
                self._maybe_settle(h)


def run(
    requests: Sequence[TraceRequest], opts: TraceOptions, io: Io = REAL
) -> dict[Hashable, Trace]:
    """Trace every request (distinct keys) under `opts`; with the REAL io, needs CAP_NET_RAW."""
    t0 = io.now()
    proto = packets.PROTOCOLS[opts.protocol]
    listen = (
        (packets.PROTO_ICMP, packets.PROTO_TCP)
        if proto == packets.PROTO_TCP
        else (packets.PROTO_ICMP,)
    )
    families = tuple(sorted({packets.ip_version(r.address) or 4 for r in requests})) or (4,)

    def failed(code: str) -> dict[Hashable, Trace]:
        return {
            r.result_key: Trace(
                protocol=opts.protocol, flow=0, duration_s=io.now() - t0, failure=code
            )
            for r in requests
        }

    try:
        socks = io.open_sockets(listen, families)
    except PermissionError:
        return failed("trace.no-capability")
    except OSError:  # e.g. IPv6 switched off in this kernel
        return failed("trace.error")
    prefixes = [ipaddress.ip_network(p) for p in opts.msee_prefixes]
    extra_flows = max(MSEE_FLOWS - opts.flows, 0) if prefixes else 0
    ports = io.ports()
    try:
        flow_ids = _flow_ids(ports, proto, opts, opts.flows + extra_flows)
        states: list[TraceState] = []
        by_key: dict[Hashable, list[TraceState]] = {}
        for r in requests:
            version = packets.ip_version(r.address)
            address = packets.canonical(r.address)
            src = io.source_address(address) if version else None
            for fid in flow_ids[: opts.flows]:
                template = _template(proto, src, address, r.port, fid) if src else None
                rr = (
                    _template(proto, src, address, r.port, fid, True)
                    if template is not None and opts.record_route and version == 4
                    else None  # IPv6 has no Record Route: the two-routers rule stands alone
                )
                st = TraceState(len(states), r.result_key, fid, template, rr)
                st.family = version or 4
                if template is None:
                    st.failure = "trace.unreachable"
                    st.finished = True
                states.append(st)
                by_key.setdefault(r.result_key, []).append(st)

        def extra(t: TraceState, i: int) -> packets.Template:
            assert t.template is not None
            fid = flow_ids[opts.flows + i]
            return _template(proto, t.template.source, t.address, t.template.dport, fid)

        engine = Engine(
            traces=states,
            opts=opts,
            socks=socks,
            table=ProbeTable(),
            budget=RouterBudget(opts.router_burst, opts.router_refill_s, opts.router_refill_v6_s),
            pps=TokenBucket(opts.pps, max(1.0, opts.pps / 50.0), max(1.0, opts.pps / 50.0), t0),
            t0=t0,
            now=io.now,
            unknown=RouterBudget(opts.router_burst, opts.router_refill_s, opts.router_refill_v6_s),
            msee=MseeProber(prefixes, by_key, extra, extra_flows) if prefixes else None,
        )
        engine.loop()
    finally:
        socks.close()
        ports.close()
    now = io.now()
    return {
        key: trace_record(
            ss,
            opts.protocol,
            t0,
            now,
            opts.first_ttl,
            engine.msee.replies(key) if engine.msee is not None else None,
        )
        for key, ss in by_key.items()
    }


def _flow_ids(ports: Ports, proto: int, opts: TraceOptions, count: int) -> list[int]:
    """Per flow: the source port (TCP/UDP, held so no local socket shares it) or ICMP id."""
    if proto == packets.PROTO_ICMP:
        base = opts.source_port if opts.source_port is not None else random.randrange(1, 60000)
        return [base + i for i in range(count)]
    kind = socket.SOCK_STREAM if proto == packets.PROTO_TCP else socket.SOCK_DGRAM
    if opts.source_port is not None:
        return [ports.reserve(kind, opts.source_port + i) for i in range(count)]
    return [ports.reserve(kind) for _ in range(count)]


def _template(
    proto: int, src: str, dst: str, port: int, flow: int, record_route: bool = False
) -> packets.Template:
    if proto == packets.PROTO_TCP:
        return packets.tcp_syn_template(src, dst, flow, port, record_route=record_route)
    if proto == packets.PROTO_UDP:
        return packets.udp_template(src, dst, flow, port, record_route=record_route)
    return packets.icmp_echo_template(src, dst, flow, record_route=record_route)
