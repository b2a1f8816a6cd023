"""Human-readable verdicts and findings, for `--explain` and logs.

Plain text lines, no colour or terminal assumptions: the CLI decides how to
print them.
"""

from __future__ import annotations

from collections.abc import Iterable

from agent.report import Finding, Result, Verdict


def verdict_headline(verdict: Verdict) -> str:
    """'expressroute via ams-1 (primary link), confidence 0.95, as expected'."""
    parts = [verdict.path_class]
    if verdict.circuit:
        link = f" ({verdict.link} link)" if verdict.link else ""
        parts.append(f"via {verdict.circuit}{link}")
    if verdict.egress:
        parts.append(f"via internet edge {verdict.egress}")
    line = " ".join(parts) + f", confidence {verdict.confidence:.2f}"
    if verdict.matches_expected is True:
        line += ", as expected"
    elif verdict.matches_expected is False:
        line += f", expected {verdict.expected}"
    return line


def explain_verdict(verdict: Verdict) -> list[str]:
    return [verdict_headline(verdict), *(f"  - {e}" for e in verdict.evidence)]


def explain_findings(findings: Iterable[Finding]) -> list[str]:
    lines: list[str] = []
    for f in findings:
        lines.append(f"{f.severity.upper()} {f.kind}")
        lines += [f"  - {e}" for e in f.evidence]
        if f.fix:
            lines.append(f"  fix: {f.fix}")
    return lines


def explain_result(result: Result) -> list[str]:
    """Verdict, evidence and each finding with its fix, for one result."""
    head = f"{result.target} {result.address or '-'} port {result.port} ({result.role})"
    lines = [head]
    if result.verdict is not None:
        lines += [f"  {line}" for line in explain_verdict(result.verdict)]
    lines += [f"  {line}" for line in explain_findings(result.findings)]
    return lines
