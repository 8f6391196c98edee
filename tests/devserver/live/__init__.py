"""Tests of the devserver's live room."""
