# embed.cmake — writes a C file holding a file's bytes: cmake -DIN=file -DOUT=file.c -DNAME=symbol -P embed.cmake
file(READ "${IN}" bytes HEX)
string(LENGTH "${bytes}" hex_len)
math(EXPR len "${hex_len} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," body "${bytes}")
string(REGEX REPLACE "((0x..,){24})" "\\1\n" body "${body}")
file(WRITE "${OUT}" "/* Generated from ${IN} by cmake/embed.cmake. */\n#include <stddef.h>\n"
     "const char ${NAME}[] = {\n${body}0};\nconst size_t ${NAME}_len = ${len};\n")
