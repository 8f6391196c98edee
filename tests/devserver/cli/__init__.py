"""Tests of the devserver's cli room."""
