"""Tests of the devserver's pipeline room."""
