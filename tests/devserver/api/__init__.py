"""Tests of the devserver's api room."""
