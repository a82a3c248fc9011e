# cc_protobuf(TARGET FILES...): compiles .proto files with protoc-c into the
# build directory and makes a static library of the generated code.
function(cc_protobuf target)
  set(srcs)
  set(outdir ${CMAKE_CURRENT_BINARY_DIR})
  foreach(proto ${ARGN})
    get_filename_component(name ${proto} NAME_WE)
    set(c ${outdir}/${name}.pb-c.c)
    set(h ${outdir}/${name}.pb-c.h)
    add_custom_command(
      OUTPUT ${c} ${h}
      COMMAND ${PROTOC_C} --c_out=${outdir} -I${CMAKE_CURRENT_SOURCE_DIR} ${CMAKE_CURRENT_SOURCE_DIR}/${proto}
      DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/${proto}
      COMMENT "protoc-c ${proto}")
    list(APPEND srcs ${c})
  endforeach()
  add_library(${target} STATIC ${srcs})
  target_include_directories(${target} PUBLIC ${outdir})
  target_link_libraries(${target} PUBLIC PkgConfig::PROTOBUFC)
  set_target_properties(${target} PROPERTIES POSITION_INDEPENDENT_CODE ON)
endfunction()
