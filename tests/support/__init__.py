"""Helpers shared by the test modules: fakes, lab and deploy harnesses, local servers. No tests here."""
