from facekit.cli import main

main()
