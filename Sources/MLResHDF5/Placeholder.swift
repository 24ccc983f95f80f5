// MLResHDF5: see the issue that builds it.
