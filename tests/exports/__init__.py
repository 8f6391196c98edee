"""Tests of the exports package."""
