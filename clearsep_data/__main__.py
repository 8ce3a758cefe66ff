"""``python -m clearsep_data`` runs the command line (handy under ``torchrun -m``)."""

from clearsep_data.cli import main

main()
