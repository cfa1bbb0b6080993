"""Ray Tune integration: every IMP trajectory is one trial. Ray is imported only here and in
``launchers/``; the IMP core runs without it."""
