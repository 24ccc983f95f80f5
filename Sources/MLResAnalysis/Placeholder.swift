// MLResAnalysis: see the issue that builds it.
