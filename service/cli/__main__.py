from voce.service.cli import main

main()
