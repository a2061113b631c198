from syncworker.cli.main import main

main()
