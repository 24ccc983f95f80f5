// MLResEngine: see the issue that builds it.
