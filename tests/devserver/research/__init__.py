"""Tests of the devserver's research room."""
