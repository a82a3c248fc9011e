# Script mode helper of cc_embed: writes the bytes of IN as a C array.
file(READ ${IN} hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
file(WRITE ${OUT} "/* Generated from ${IN}; do not edit. */\nconst char ${SYM}[] = {${bytes} 0x00};\n")
