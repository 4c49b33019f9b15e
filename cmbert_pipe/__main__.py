from cmbert_pipe.cli import main

main()
