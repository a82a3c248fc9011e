# cc_embed(OUT_C SYMBOL FILE): generates OUT_C defining
#   const char SYMBOL[] = "<contents of FILE>";
# so scripts (Lua for Redis) ship inside the binary.
function(cc_embed out symbol file)
  add_custom_command(
    OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -DIN=${file} -DOUT=${out} -DSYM=${symbol} -P ${CMAKE_SOURCE_DIR}/cmake/EmbedRun.cmake
    DEPENDS ${file} ${CMAKE_SOURCE_DIR}/cmake/EmbedRun.cmake
    COMMENT "embed ${file}")
endfunction()
