from semsearch.launch import main

main()
