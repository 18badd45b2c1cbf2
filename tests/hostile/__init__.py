"""Hostile and broken submissions for the autograder, generated from the current lesson."""
