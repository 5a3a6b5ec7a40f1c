"""Turning check outcomes into verdicts per requirement, and into files."""
