"""Verdicts: pure logic that turns measurements and site facts into a path class, evidence and findings."""
