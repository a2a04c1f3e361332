"""Load generator and benchmark runner for the rooms chat server and its tutorial baseline."""
