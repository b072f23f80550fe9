"""Training: the loop and what it records (the run folder itself is ``nnback.runfolder``)."""
