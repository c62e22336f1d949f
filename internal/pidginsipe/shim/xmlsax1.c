/*
 * LD_PRELOAD shim for pidgin-sipe 1.25 on libxml2 2.9.14 (Debian 12).
 *
 * pidgin-sipe parses every XML body (contact list, presence, roaming
 * data, provisioning) with xmlSAXUserParseMemory and a handler that has
 * the SAX1 callbacks (startElement/endElement) but is marked
 * XML_SAX2_MAGIC without startElementNs. libxml2 2.9.14 then runs its
 * SAX2 code path and never calls the SAX1 callbacks, so sipe_xml_parse()
 * returns NULL for any document and pidgin-sipe silently shows no
 * contacts and no presence. This shim parses such handlers with
 * XML_PARSE_SAX1, as the library did before; every other caller
 * (libpurple's own SAX2 parser) goes to the real function.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <libxml/parser.h>

int xmlSAXUserParseMemory(xmlSAXHandlerPtr sax, void *user_data, const char *buffer, int size)
{
	static int (*next)(xmlSAXHandlerPtr, void *, const char *, int);
	xmlParserCtxtPtr ctxt;
	int ret;

	if (next == NULL)
		next = (int (*)(xmlSAXHandlerPtr, void *, const char *, int))dlsym(RTLD_NEXT, "xmlSAXUserParseMemory");
	if (sax == NULL || sax->initialized != XML_SAX2_MAGIC || sax->startElementNs != NULL || sax->startElement == NULL)
		return next(sax, user_data, buffer, size);

	ctxt = xmlCreatePushParserCtxt(sax, user_data, NULL, 0, NULL);
	if (ctxt == NULL)
		return -1;
	xmlCtxtUseOptions(ctxt, XML_PARSE_SAX1);
	ret = xmlParseChunk(ctxt, buffer, size, 1);
	if (ret == 0 && !ctxt->wellFormed)
		ret = -1;
	xmlFreeParserCtxt(ctxt);
	return ret;
}
