// MLResTraining: see the issue that builds it.
